//! One HTTP GET of a small document (a release catalog): bounded time, bounded size, no
//! redirects to other schemes, the status checked.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("GET {0}: {1}")]
    Transport(String, String),
    #[error("GET {0}: HTTP {1}")]
    Status(String, u16),
    #[error("GET {0}: the answer is larger than {1} bytes")]
    TooLarge(String, usize),
    #[error("GET {0}: the answer is not UTF-8")]
    NotText(String),
}

/// The body of `url` as text, at most `limit` bytes.
pub async fn get_text(url: &str, timeout: Duration, limit: usize) -> Result<String, GetError> {
    let transport =
        |e: reqwest::Error| GetError::Transport(url.to_string(), e.without_url().to_string());
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("fleetwave/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(transport)?;
    let mut res = client.get(url).send().await.map_err(transport)?;
    if !res.status().is_success() {
        return Err(GetError::Status(url.to_string(), res.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(GetError::TooLarge(url.to_string(), limit));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| GetError::NotText(url.to_string()))
}
