//! ray-macros
