//! README.md renders as meant: every line that looks like a table row belongs to a table
//! (a blank line inside a table ends it, and the rows after it render as text), and the
//! command table has a row for every command.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// `1-based line: text` of each line that starts like a table row but is not in a table.
fn stray_rows(md: &str) -> Vec<String> {
    let mut tables: Vec<Range<usize>> = Vec::new();
    let mut code: Vec<Range<usize>> = Vec::new();
    for (e, range) in Parser::new_ext(md, Options::ENABLE_TABLES).into_offset_iter() {
        match e {
            Event::Start(Tag::Table(_)) => tables.push(range),
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_) | CodeBlockKind::Indented)) => {
                code.push(range)
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    for (i, line) in md.split_inclusive('\n').enumerate() {
        // Where the line's text starts: a table in a list item is indented.
        let start = at + line.len() - line.trim_start().len();
        let inside = |rs: &[Range<usize>]| rs.iter().any(|r| r.contains(&start));
        if line.trim_start().starts_with('|') && !inside(&tables) && !inside(&code) {
            out.push(format!("{}: {}", i + 1, line.trim_end()));
        }
        at += line.len();
    }
    out
}

/// The text of the first cell of each row of the table whose header starts with `head`.
fn first_cells(md: &str, head: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let (mut in_cell, mut cell, mut first, mut in_table) = (false, String::new(), true, false);
    let mut header_ok = false;
    for e in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match e {
            Event::Start(Tag::Table(_)) => (in_table, header_ok) = (true, false),
            Event::End(TagEnd::Table) => in_table = false,
            Event::Start(Tag::TableHead | Tag::TableRow) => first = true,
            Event::Start(Tag::TableCell) => (in_cell, cell) = (true, String::new()),
            Event::End(TagEnd::TableCell) => {
                in_cell = false;
                if first && in_table {
                    if cell == head {
                        header_ok = true;
                    } else if header_ok {
                        rows.push(cell.clone());
                    }
                }
                first = false;
            }
            Event::Text(t) | Event::Code(t) if in_cell => cell.push_str(&t),
            _ => {}
        }
    }
    rows
}

#[test]
fn a_split_table_is_caught() {
    let md = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n\n```\n| in code |\n```\n";
    assert_eq!(stray_rows(md), ["5: | 3 | 4 |"]);
    let listed = "- item\n\n  | a | b |\n  |---|---|\n  | 1 | 2 |\n\n  | 3 | 4 |\n";
    assert_eq!(stray_rows(listed), ["7:   | 3 | 4 |"]);
    assert!(stray_rows("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n").is_empty());
}

#[test]
fn readme_tables_are_whole() {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let stray = stray_rows(&md);
    assert!(
        stray.is_empty(),
        "README.md lines that look like table rows but render as text (a blank line splits their table?):\n{}",
        stray.join("\n")
    );
}

#[test]
fn readme_command_table_has_every_command() {
    use clap::CommandFactory;
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows = first_cells(&md, "command");
    assert!(!rows.is_empty(), "no table headed `command` in README.md");
    let cli = fleetwave::cli::Cli::command();
    let missing: Vec<&str> = cli
        .get_subcommands()
        .map(|s| s.get_name())
        .filter(|name| {
            !rows.iter().any(|r| {
                r.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                    .any(|w| w == *name)
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a row in README's table: {missing:?}\n{rows:?}"
    );
}
