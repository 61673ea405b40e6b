//! The end-to-end layer (API.md part 5). Filled in by the client issue.
