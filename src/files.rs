//! The names of the files mab keeps per node under `.mab/` (logs, digests, metadata, image
//! IDs, layouts): a node id made safe as a file name. A leaf module: the plan names the files,
//! the manifest refuses ids that would share them.

/// `id` with every character but ASCII letters, digits, `.`, `_` and `-` replaced by `_`.
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
