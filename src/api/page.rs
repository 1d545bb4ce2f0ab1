//! Keyset pagination of long lists: `?limit=N&cursor=C`.
//!
//! The body stays a plain JSON array, as Multica clients expect. When more
//! rows follow, the reply carries `X-Next-Cursor: C` and `Link: <same query
//! with cursor=C>; rel="next"`. A cursor is the sort key of the last row
//! sent (its `created_at`, to the millisecond, and its id), base64url-encoded:
//! opaque to clients, and a page resumes right after that row however many
//! rows were added or removed meanwhile.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::domain::{EntityId, Timestamp};
use crate::error::ApiError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

/// The response header that carries the cursor of the next page.
pub const NEXT_CURSOR: &str = "X-Next-Cursor";

/// The sort key of a row: its `created_at` and its id (of whichever
/// entity the list holds).
pub type Key = (Timestamp, Uuid);

/// How a cursor spells its time: to the millisecond, as rows are ordered.
const CURSOR_TIME: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// Which page a request asks for.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: usize,
    /// Rows strictly after this key; `None` for the first page.
    after: Option<Key>,
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl Page {
    /// Reads `limit` (1..=500, default 100) and `cursor` from the query
    /// string; anything else is a 400.
    pub fn of(req: &HttpRequest) -> Result<Page, ApiError> {
        let query = web::Query::<PageQuery>::from_query(req.query_string())
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let limit = match query.limit.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limit must be an integer between 1 and {MAX_LIMIT}"
                    ))
                })?,
        };
        let after = match query.cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(decode(raw).ok_or_else(|| ApiError::bad_request("invalid cursor"))?),
        };
        Ok(Page { limit, after })
    }

    /// The key the page starts after, as the database layer takes it.
    pub fn after<I: EntityId>(&self) -> Option<(Timestamp, I)> {
        self.after
            .map(|(created_at, id)| (created_at, I::from_uuid(id)))
    }

    /// How many rows to read: one more than the page holds, so that a next
    /// page is known to exist without counting.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }
}

fn encode(key: &Key) -> String {
    let created_at = key.0.utc().format(CURSOR_TIME);
    URL_SAFE_NO_PAD.encode(format!("{created_at}|{}", key.1))
}

/// A cursor made by [`encode`]: a time in [`CURSOR_TIME`] and a UUID.
fn decode(cursor: &str) -> Option<Key> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (created_at, id) = text.split_once('|')?;
    if created_at.len() != 24 {
        return None;
    }
    let created_at = chrono::NaiveDateTime::parse_from_str(created_at, CURSOR_TIME).ok()?;
    let created_at = Timestamp::from_utc(created_at.and_utc());
    Some((created_at, crate::domain::parse_uuid(id).ok()?))
}

/// The `Link: <…>; rel="next"` of this request's path and query with
/// `key` set to `value`, any of the `replaced` parameters (and `key`)
/// left out: for keyset cursors and for transcripts' `after_seq`.
pub(super) fn next_link(req: &HttpRequest, key: &str, value: &str, replaced: &[&str]) -> String {
    let next = format!("{key}={value}");
    let query: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && name != key && !replaced.contains(&name)
        })
        .chain([next.as_str()])
        .collect();
    format!("<{}?{}>; rel=\"next\"", req.uri().path(), query.join("&"))
}

/// Replies with the first `page.limit` of `rows` (read with
/// [`Page::fetch`]) as a JSON array, plus the next-page headers when there
/// were more; `key` is a row's sort key.
pub fn reply<T: Serialize, I: EntityId>(
    req: &HttpRequest,
    page: &Page,
    rows: Vec<T>,
    key: impl Fn(&T) -> (Timestamp, I),
) -> HttpResponse {
    reply_cut(req, page, rows, key, false)
}

/// [`reply`] for a page the database layer ended early (`cut`: more rows
/// follow however few it holds), to bound the bytes of one reply.
pub fn reply_cut<T: Serialize, I: EntityId>(
    req: &HttpRequest,
    page: &Page,
    mut rows: Vec<T>,
    key: impl Fn(&T) -> (Timestamp, I),
    cut: bool,
) -> HttpResponse {
    let more = cut || rows.len() > page.limit;
    rows.truncate(page.limit);
    let next = rows.last().filter(|_| more).map(|row| {
        let (created_at, id) = key(row);
        encode(&(created_at, id.uuid()))
    });
    let mut response = HttpResponse::Ok();
    if let Some(cursor) = next {
        response.insert_header((header::LINK, next_link(req, "cursor", &cursor, &[])));
        response.insert_header((NEXT_CURSOR, cursor));
    }
    response.json(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_key_it_was_made_from() {
        let created_at = "2026-11-25T10:00:00.123Z".parse().unwrap();
        let key = (created_at, Uuid::new_v4());
        assert_eq!(decode(&encode(&key)), Some(key));
    }

    #[test]
    fn junk_is_not_a_cursor() {
        for junk in [
            "x",
            "!!!",
            &URL_SAFE_NO_PAD.encode("no separator"),
            &URL_SAFE_NO_PAD.encode("2026-11-25|not-an-id"),
            &URL_SAFE_NO_PAD.encode(format!("yesterday|{}", Uuid::new_v4())),
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }
}
