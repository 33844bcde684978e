//! Library target only so that `overlay-user` can name this crate as a
//! build-dependency (aya-build rebuilds the object when it changes). The
//! programs live in the `overlay` binary target (`src/main.rs`).
#![no_std]
