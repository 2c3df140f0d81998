//! Reads test-vector files (age style): `key: value` header lines, a blank line, then
//! the bytes as hex (whitespace ignored). Unknown header keys fail the test.

// Test support: a malformed vector file should panic loudly.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One test vector.
pub struct Vector {
    /// The file it came from.
    pub path: PathBuf,
    /// Header fields.
    pub fields: BTreeMap<String, String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Vector {
    /// A required header field.
    pub fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("{}: missing `{key}`", self.path.display()))
    }
    /// The file name.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// Every vector in `core/tests/data/<area>`, sorted by name; `allowed` lists the header keys.
pub fn load(area: &str, allowed: &[&str]) -> Vec<Vector> {
    load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(area),
        allowed,
    )
}

/// Every vector in `dir`, sorted by name (for another crate's tests of core's vectors).
pub fn load_dir(dir: &Path, allowed: &[&str]) -> Vec<Vector> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.into_iter().map(|p| parse(&p, allowed)).collect()
}

fn parse(path: &Path, allowed: &[&str]) -> Vector {
    let text = std::fs::read_to_string(path).unwrap();
    let (head, body) = text
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{}: no blank line", path.display()));
    let mut fields = BTreeMap::new();
    for line in head.lines() {
        let (k, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{}: bad header line {line:?}", path.display()));
        assert!(
            allowed.contains(&k),
            "{}: unknown header key `{k}`",
            path.display()
        );
        assert!(
            fields.insert(k.to_string(), v.to_string()).is_none(),
            "{}: `{k}` twice",
            path.display()
        );
    }
    let hexs: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(hexs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Vector {
        path: path.to_path_buf(),
        fields,
        bytes,
    }
}

/// Writes a vector file (used by the generators, which run only on request).
pub fn write(area: &str, name: &str, fields: &[(&str, &str)], bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(area);
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push('\n');
    for chunk in hex::encode(bytes).as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    std::fs::write(dir.join(name), s).unwrap();
}
