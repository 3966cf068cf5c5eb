package store

// CancelByTagSQL is the cancel-by-tag statement, for the EXPLAIN in
// TestCancelByTagUsesAnIndex.
const CancelByTagSQL = cancelByTagSQL
