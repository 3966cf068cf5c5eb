package store

// GrantsToGitHubUserSQL exposes the statement to the EXPLAIN test.
const GrantsToGitHubUserSQL = grantsToGitHubUserSQL

// Console statements, for the EXPLAIN tests.
const (
	CountCompletedSQL = countCompletedSQL
	CountOthersSQL    = countOthersSQL
)

// SearchSQL exposes the search statement to the EXPLAIN test.
var SearchSQL = searchSQL
