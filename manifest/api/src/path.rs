//! Paths and other byte strings in URLs and JSON: percent-encoded, so names that are
//! not UTF-8 cross intact.

/// Characters left as they are in encoded paths: unreserved ones and `/`.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path (or any bytes) for URLs and JSON.
pub fn encode_path(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, PATH_SET).to_string()
}

/// The bytes a percent-encoded path names.
pub fn decode_path(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}
