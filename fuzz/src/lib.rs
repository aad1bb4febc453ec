//! flagsync's fuzz targets as a library: the AFL harnesses in `src/bin/` call these, and
//! `tests/fuzz_regressions.rs` includes `targets.rs` itself to replay findings.

pub mod targets;

/// A target: raw fuzzer bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name, for the `replay` tool.
pub const TARGETS: &[(&str, Target)] = &[
    ("top", targets::top),
    ("jos", targets::jos),
    ("operator", targets::operator),
    ("csv", targets::csv),
    ("config", targets::config),
    ("admin", targets::admin),
];
