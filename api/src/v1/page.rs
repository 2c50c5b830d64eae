//! fleet's page tokens: base64url (padded) of four bytes, the page size and the
//! 1-based page number, both little-endian u16. The size is fixed at 100.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use super::HttpError;

/// Items per page (fleet's `token_limit`).
pub(crate) const LIMIT: u16 = 100;

/// The page a request asks for (1 without a token).
pub(crate) fn requested(tokens: &[String]) -> Result<u16, HttpError> {
    let token = match tokens {
        [] => return Ok(1),
        [t] => t,
        _ => return Err(HttpError::bad_request("too many values for page token")),
    };
    let bytes = URL_SAFE
        .decode(token)
        .map_err(|e| HttpError::bad_request(format!("invalid page token: {e}")))?;
    let [l0, l1, p0, p1] = bytes[..] else {
        return Err(HttpError::bad_request(format!(
            "invalid page token: {} bytes, want 4",
            bytes.len()
        )));
    };
    let limit = u16::from_le_bytes([l0, l1]);
    let page = u16::from_le_bytes([p0, p1]);
    if limit != LIMIT {
        return Err(HttpError::bad_request(format!(
            "token limit must be {LIMIT}"
        )));
    }
    if page == 0 {
        return Err(HttpError::bad_request(
            "token page must be greater than zero",
        ));
    }
    Ok(page)
}

pub(crate) fn token(page: u16) -> String {
    let [l0, l1] = LIMIT.to_le_bytes();
    let [p0, p1] = page.to_le_bytes();
    URL_SAFE.encode([l0, l1, p0, p1])
}

/// Page `page` of `items` and the token of the next one. As fleet, the token is
/// given whenever this page is full, so a list ending exactly on a page boundary has
/// one more, empty, page.
pub(crate) fn slice<T>(items: &[T], page: u16) -> (&[T], Option<String>) {
    let limit = usize::from(LIMIT);
    let start = (usize::from(page) - 1)
        .saturating_mul(limit)
        .min(items.len());
    let end = usize::from(page).saturating_mul(limit).min(items.len());
    let next = (usize::from(page) * limit <= items.len())
        .then(|| page.checked_add(1).map(token))
        .flatten();
    (&items[start..end], next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_as_fleet_writes_them() {
        assert_eq!(token(2), "ZAACAA==");
        assert_eq!(requested(&["ZAACAA==".into()]).unwrap(), 2);
        assert_eq!(requested(&[]).unwrap(), 1);
        let bad = |t: &str| requested(&[t.to_string()]).unwrap_err().message;
        assert_eq!(bad("EwBMLg=="), "token limit must be 100");
        assert_eq!(bad("ZAAAAA=="), "token page must be greater than zero");
        assert!(bad("ZAA").starts_with("invalid page token"));
        assert!(bad("!!!!").starts_with("invalid page token"));
        let two = requested(&["ZAACAA==".into(), "ZAACAA==".into()]).unwrap_err();
        assert_eq!(two.message, "too many values for page token");
    }

    #[test]
    fn slices_and_next_tokens() {
        let items: Vec<u32> = (0..250).collect();
        let (p1, next) = slice(&items, 1);
        assert_eq!(
            (p1.len(), p1[0], next.as_deref()),
            (100, 0, Some("ZAACAA=="))
        );
        let (p3, next) = slice(&items, 3);
        assert_eq!((p3.len(), p3[0], next), (50, 200, None));
        let exact: Vec<u32> = (0..200).collect();
        let (p2, next) = slice(&exact, 2);
        assert_eq!((p2.len(), next.is_some()), (100, true));
        let (p3, next) = slice(&exact, 3);
        assert_eq!((p3.len(), next), (0, None));
        assert_eq!(slice(&exact, 60000).0.len(), 0);
    }
}
