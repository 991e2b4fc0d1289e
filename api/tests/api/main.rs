//! Integration tests: the real application on port 0 against the local
//! cluster, each test in its own schema on every node.

mod helpers;
