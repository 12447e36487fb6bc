//! Prints the JSON Schema of `FleetUpgradePlan`, derived from the plan types:
//!
//! ```sh
//! cargo run --locked --example plan_schema > schema/fleetupgradeplan.schema.json
//! ```
//!
//! tests/schema.rs fails when the committed file differs from this output.

fn main() {
    let schema = fleetwave::core::plan::json_schema();
    let text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    println!("{text}");
}
