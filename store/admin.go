// Cluster administration: creating and dropping whole databases, for the
// throwaway clusters of `make run` and `make test` and for benchmarks.
package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Admin is one connection to a cluster's maintenance database.
type Admin struct{ conn *pgx.Conn }

// ConnectAdmin connects to url (a role that may create databases).
func ConnectAdmin(ctx context.Context, url string) (*Admin, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect to cluster: %w", err)
	}
	return &Admin{conn: conn}, nil
}

// Exec runs one administrative statement.
func (a *Admin) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := a.conn.Exec(ctx, sql, args...)
	return err
}

// DatabaseExists reports whether the cluster has a database called name.
func (a *Admin) DatabaseExists(ctx context.Context, name string) (bool, error) {
	var yes bool
	err := a.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&yes)
	return yes, err
}

// Close closes the connection.
func (a *Admin) Close() { a.conn.Close(context.Background()) }

// QuoteIdentifier quotes name for use as an SQL identifier.
func QuoteIdentifier(name string) string { return pgx.Identifier{name}.Sanitize() }
