//! What the corpus tests share: the 16 real exports in `shared/routeros-exports`.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/routeros-exports")
}

pub fn export(prefix: &str) -> String {
    let dir = corpus_dir();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".rsc") {
            return std::fs::read_to_string(p).unwrap();
        }
    }
    panic!("no export {prefix}* in {}", dir.display());
}

pub fn all_exports() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rsc"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 16, "the corpus has 16 exports");
    out
}
