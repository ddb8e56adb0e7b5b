//! Unit tests for config validation.
use super::super::load_str;
