//! ray-core
