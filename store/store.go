// Package store owns every SQL statement paymentd runs. It wraps a pgx pool,
// applies the embedded migrations, and exposes queries that accept either the
// pool or a transaction, so callers compose several writes in one
// transaction. It imports nothing else from the project.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned when a query that expects one row finds none.
var ErrNotFound = errors.New("not found")

// DBTX is what a query needs: satisfied by *pgxpool.Pool, *pgxpool.Conn and pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Queries runs the project's statements against a pool or a transaction.
type Queries struct {
	db DBTX
}

// New returns Queries bound to db (the pool or a transaction).
func New(db DBTX) *Queries { return &Queries{db: db} }

// DB is the connection pool plus the transaction helper.
type DB struct {
	Pool *pgxpool.Pool
	*Queries
}

// Open connects to url and checks the connection. The pool size is
// maxConns when positive, else pgx's default.
func Open(ctx context.Context, url string, maxConns int32) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// Every session speaks UTC, so timestamps read back are UTC.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &DB{Pool: pool, Queries: New(pool)}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// InTx runs fn in a transaction, committing when it returns nil and rolling
// back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(q *Queries) error) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return fn(New(tx))
	})
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// Listen LISTENs on channel on a connection of its own and calls fn with the
// payload of every notification, until ctx ends or the connection fails; it
// returns the reason. The caller reconnects (and covers the gap by polling).
func (db *DB) Listen(ctx context.Context, channel string, fn func(payload string)) error {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			// A canceled wait leaves the connection in an unknown state,
			// and a failed one is broken: never hand it back to the pool.
			conn.Conn().Close(context.Background())
			return err
		}
		fn(n.Payload)
	}
}

// lockCheckEvery is how often a held advisory lock's session is checked,
// and lockCheckTimeout how long a check may take before the session is
// taken for gone.
var (
	lockCheckEvery   = 5 * time.Second
	lockCheckTimeout = 5 * time.Second
)

// Lock is a session-level advisory lock, held on a connection taken for
// the purpose. The lock lives as long as that session: if the connection
// breaks (a failover, a restarted server) or stops answering (a
// half-open connection), another session may take the lock. So a Lock
// checks its session every few seconds and closes Lost when a check fails;
// whoever works under the lock stops then.
type Lock struct {
	conn   *pgxpool.Conn
	key    int64
	lost   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	checks atomic.Int64 // checks that found the session alive
}

// TryLock takes the session-level advisory lock key without waiting. When
// another session holds it, ok is false and the Lock is nil.
func (db *DB) TryLock(ctx context.Context, key int64) (_ *Lock, ok bool, err error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("acquire connection for lock %d: %w", key, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("take advisory lock %d: %w", key, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	l := &Lock{conn: conn, key: key, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l, true, nil
}

// watch checks the lock's session until Release, and closes lost (and the
// connection, which ends the session if the server still has it) when a
// check fails.
func (l *Lock) watch() {
	defer close(l.done)
	t := time.NewTicker(lockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lockCheckTimeout)
		_, err := l.conn.Exec(ctx, `SELECT 1`)
		if err != nil {
			l.conn.Conn().Close(ctx)
			cancel()
			close(l.lost)
			return
		}
		cancel()
		l.checks.Add(1)
	}
}

// Lost is closed when the lock's session was found gone: the lock may be
// another session's now.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Release gives the lock and its connection back. A lock that was lost, or
// whose unlock fails, has its connection closed: closing the session
// releases the lock.
func (l *Lock) Release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-l.lost: // closed by watch
	default:
		if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
			l.conn.Conn().Close(ctx)
		}
	}
	l.conn.Release()
}

// notFound turns pgx's no-rows error into ErrNotFound; it is the one place
// that does so.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
