// Package pgtest gives each test its own real PostgreSQL database, cloned
// from a template that has every migration applied, so packages and tests
// run in parallel without sharing rows, advisory locks or notifications.
//
// It needs PAYMENTD_TEST_DATABASE_URL: a URL for a role that may create
// databases (`make test` starts a local cluster and sets it; .ci/run does the
// same with Debian's postgresql).
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

// EnvVar names the admin connection URL the tests use.
const EnvVar = "PAYMENTD_TEST_DATABASE_URL"

// adminURL returns the admin URL or fails the test: a missing database must
// never turn into skipped, silently passing tests.
func adminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		t.Fatalf("%s is not set; run the tests with `make test`, which starts a local PostgreSQL", EnvVar)
	}
	return u
}

// withDatabase returns base with its database name replaced.
func withDatabase(t testing.TB, base, name string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}

func adminExec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if err := tryAdminExec(t, sql, args...); err != nil {
		t.Fatal(err)
	}
}

func tryAdminExec(t testing.TB, sql string, args ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := store.ConnectAdmin(ctx, adminURL(t))
	if err != nil {
		return fmt.Errorf("connect to test cluster: %w", err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// dropDB drops a test's database once the test's pools are closed. WITH
// (FORCE) ends what the test left connected, but a role that is not a
// superuser (CI's) may not end an autovacuum worker busy in it; a plain
// DROP DATABASE stops the worker itself, so it is the fallback, tried
// until a deadline.
func dropDB(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := tryAdminExec(t, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
		if err == nil {
			return
		}
		if plain := tryAdminExec(t, `DROP DATABASE IF EXISTS `+name); plain == nil {
			return
		} else if time.Now().After(deadline) {
			t.Errorf("drop test database: %v; then %v", err, plain)
			return
		}
		time.Sleep(100 * time.Millisecond) // polling the drop with a deadline
	}
}

// templateName is derived from the migrations, so a changed migration gets
// a fresh template.
func templateName(t testing.TB) string {
	t.Helper()
	ms, err := store.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%d %s\n%s\n", m.Version, m.Name, m.SQL)
	}
	return "paymentd_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]
}

// ensureTemplate creates the migrated template once per cluster, under an
// advisory lock shared by every test process.
func ensureTemplate(t testing.TB) string {
	t.Helper()
	name := templateName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := store.ConnectAdmin(ctx, adminURL(t))
	if err != nil {
		t.Fatalf("connect to test cluster: %v", err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, `SELECT pg_advisory_lock(424242)`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(424242)`)
	exists, err := conn.DatabaseExists(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		return name
	}
	building := name + "_build"
	_ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building)
	if err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		t.Fatalf("create template: %v", err)
	}
	db, err := store.Open(ctx, withDatabase(t, adminURL(t), building), 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		t.Fatalf("migrate template: %v", err)
	}
	if err := conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		t.Fatalf("rename template: %v", err)
	}
	return name
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// createDB creates a database (from template when not "") and drops it
// when the test ends.
func createDB(t testing.TB, template string) string {
	t.Helper()
	name := randomName("paymentd_test_")
	sql := `CREATE DATABASE ` + name
	if template != "" {
		sql += ` TEMPLATE ` + template
	}
	adminExec(t, sql)
	t.Cleanup(func() { dropDB(t, name) })
	return withDatabase(t, adminURL(t), name)
}

// URL returns the URL of a fresh database with every migration applied.
func URL(t testing.TB) string {
	t.Helper()
	return createDB(t, ensureTemplate(t))
}

// EmptyURL returns the URL of a fresh database with no schema at all.
func EmptyURL(t testing.TB) string {
	t.Helper()
	return createDB(t, "")
}

// New returns an open pool on a fresh migrated database, closed at cleanup.
func New(t testing.TB) *store.DB {
	t.Helper()
	return Open(t, URL(t))
}

// Open opens url and closes the pool at cleanup.
func Open(t testing.TB, url string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, url, 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}
