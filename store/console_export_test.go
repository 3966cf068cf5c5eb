package store

// Console statements, for the EXPLAIN tests.
const (
	CountCompletedSQL = countCompletedSQL
	CountOthersSQL    = countOthersSQL
)

// SearchSQL exposes the search statement to the EXPLAIN test.
var SearchSQL = searchSQL

// SubscriptionSearchSQL exposes the subscription search statement to the
// EXPLAIN test.
var SubscriptionSearchSQL = subscriptionSearchSQL
