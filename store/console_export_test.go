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

// OrderSearchSQL is SearchOrders' statement, for the EXPLAIN test.
func OrderSearchSQL(s OrderSearch) (string, []any, error) {
	return keysetSQL("orders", orderColumns, orderConditions, keyset{s.Field, s.Value, string(s.Status), s.From, s.To,
		s.After, s.Limit})
}
