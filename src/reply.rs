//! The JSON error body of every refusal over HTTP: `{"error": code, "message": …}`, with
//! the status, as both the HTTP surface (`/api/*`) and the WebSocket upgrade (`/ws`)
//! answer.
//!
//! `code` is a stable, machine-readable word (`unauthorized`, `queue_full`,
//! `invalid_topic`, `unavailable`, …); `message` is for people.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

/// A JSON error response, `{"error": code, "message": …}`, with the given status (an
/// unknown status becomes 500).
pub(crate) fn json_error(status: u16, code: &str, message: impl std::fmt::Display) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .json(serde_json::json!({ "error": code, "message": message.to_string() }))
}

/// 401 for a missing or wrong token, with `WWW-Authenticate: Bearer`.
pub(crate) fn unauthorized(err: impl std::fmt::Display) -> HttpResponse {
    let mut res = json_error(401, "unauthorized", err);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    #[test]
    fn the_body_names_the_code_and_the_message() {
        let res = super::json_error(413, "too_large", "the body is over 10 bytes");
        assert_eq!(res.status().as_u16(), 413);
        let body = res.into_body().try_into_bytes().expect("a complete body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({"error": "too_large", "message": "the body is over 10 bytes"})
        );
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let res = super::unauthorized("missing token");
        assert_eq!(res.status().as_u16(), 401);
        assert_eq!(
            res.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
    }
}
