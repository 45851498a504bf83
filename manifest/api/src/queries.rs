//! The query strings of the API's routes, one type each, named by the route table
//! ([`crate::routes::Call::Query`]): the client writes them with
//! [`crate::routes::To::with`], the daemon reads them with [`parse`], so neither side
//! spells a parameter. A route without parameters has `()`.
//!
//! Invariant: parameters the daemon does not know are ignored (older clients and
//! hand-written URLs keep working); a known one that does not parse is a 400 naming it.

use serde::de::{DeserializeOwned, Deserializer, Error};
use serde::{Deserialize, Serialize, Serializer};

/// `?version=SPEC` (a number, a snapshot name, HEAD~N) of a read: HEAD without one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `?mode=OCTAL&mtime_ns=N` of `PUT /v1/files/PATH` (default: 644, now).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAttrs {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "octal_out",
        deserialize_with = "octal_in"
    )]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
}

/// `?recursive=true` of a removal (`1` and `yes` say so too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "flag")]
    pub recursive: bool,
}

/// `?blocks=true` of `POST /v1/chunks/read`: the reader takes a block holding any of
/// the chunks whole, once, and decodes it itself ([`crate::batch`]); without it every
/// chunk comes as its own frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAs {
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "flag")]
    pub blocks: bool,
}

/// `?kind=data|node` of `PUT /v1/chunks/ID` (default: data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
}

/// What a chunk put on its own holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Data,
    Node,
}

/// `?a=A&b=B`: the two versions a diff compares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Between {
    pub a: String,
    pub b: String,
}

/// `?limit=N`: at most so many answers, newest first (all without one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `query` (the URL's part after `?`, empty for none) as `Q`, or why not.
pub fn parse<Q: DeserializeOwned>(query: &str) -> Result<Q, String> {
    serde_urlencoded::from_str(query).map_err(|e| format!("query string: {e}"))
}

/// `query` as the URL's part after `?` (empty when it has nothing to say).
pub fn write<Q: Serialize>(query: &Q) -> String {
    serde_urlencoded::to_string(query).expect("query types serialise")
}

fn is_false(b: &bool) -> bool {
    !b
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match String::deserialize(d)?.as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(D::Error::custom(format!("{other:?} is not true or false"))),
    }
}

fn octal_out<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.serialize_str(&format!("{m:o}")),
        None => s.serialize_none(),
    }
}

fn octal_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    u32::from_str_radix(&text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("mode {text:?} is not octal permission bits")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_and_bad_values_are_named() {
        let attrs = FileAttrs {
            mode: Some(0o755),
            mtime_ns: Some(-5),
        };
        assert_eq!(write(&attrs), "mode=755&mtime_ns=-5");
        assert_eq!(parse::<FileAttrs>("mode=755&mtime_ns=-5"), Ok(attrs));
        assert_eq!(parse::<FileAttrs>(""), Ok(FileAttrs::default()));
        let bad = parse::<FileAttrs>("mode=9").unwrap_err();
        assert!(bad.contains("mode \"9\" is not octal"), "{bad}");
        assert!(parse::<FileAttrs>("mode=17777").is_err());
        let v = AtVersion {
            version: Some("snap 1/é&x".into()),
        };
        assert_eq!(parse::<AtVersion>(&write(&v)), Ok(v));
        assert_eq!(write(&AtVersion::default()), "");
        for (q, recursive) in [("recursive=yes", true), ("recursive=0", false), ("", false)] {
            assert_eq!(parse::<Removal>(q), Ok(Removal { recursive }), "{q}");
        }
        assert!(parse::<Removal>("recursive=maybe").is_err());
        let limit = parse::<Limit>("limit=x").unwrap_err();
        assert!(limit.contains("invalid digit"), "{limit}");
        assert_eq!(parse::<Limit>("limit=3&other=1").unwrap().limit, Some(3));
        let kind = parse::<ChunkPut>("kind=tree").unwrap_err();
        assert!(kind.contains("data") && kind.contains("node"), "{kind}");
        assert!(parse::<Between>("a=1").unwrap_err().contains("`b`"));
    }
}
