package store

// GrantsToGitHubUserSQL exposes the statement to the EXPLAIN test.
const GrantsToGitHubUserSQL = grantsToGitHubUserSQL
