//! The viewer's HTTP: the [`Transport`] that tally-core's online rounds go through, and
//! the POST that `trail vouch` and `trail restore` use. Every message is built, encrypted
//! and checked by tally-core ([`tally_core::rental::validate_online`] and friends); this
//! module only moves bytes.

use std::time::Duration;
use tally_core::rental::Transport;

/// One POST of an encrypted message (`application/octet-stream`) to `endpoint`: the HTTP
/// status and the answer (at most `limit` bytes), or why the server could not be reached or
/// its answer not read. Every status is returned: the caller decides what a 4xx means.
pub fn post(
    endpoint: &str,
    body: &[u8],
    timeout: Duration,
    limit: u64,
) -> Result<(u16, Vec<u8>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent
        .post(endpoint)
        .header("content-type", "application/octet-stream")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok((status, answer))
}

/// HTTP(S) through ureq: the transport of the window and the headless commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

impl Transport for Http {
    fn post(
        &self,
        endpoint: &str,
        body: &[u8],
        timeout: Duration,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), String> {
        post(endpoint, body, timeout, limit)
    }
}
