// Package devpg runs a throwaway PostgreSQL cluster in a local directory for
// `make run` and `make test`: initdb on first use, pg_ctl to start and stop,
// a Unix socket inside the directory and no TCP listener, so it never clashes
// with another cluster on the machine. PostgreSQL refuses to run as root, so
// as root the cluster belongs to the "postgres" user (or "nobody").
package devpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/store"
)

// Port is the cluster's port; it only names the socket file.
const Port = 5439

// Superuser is the cluster's superuser role.
const Superuser = "paymentd"

// Cluster is a local PostgreSQL cluster under Dir.
type Cluster struct {
	Dir   string // absolute
	bin   string // directory holding initdb, pg_ctl
	runAs string // OS user to run the server as, "" for the current user
}

// Open locates the PostgreSQL binaries and prepares a Cluster under dir.
func Open(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: abs, bin: bin}
	if os.Geteuid() == 0 {
		c.runAs = "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			c.runAs = "postgres"
		}
	}
	return c, nil
}

func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found (install Debian's postgresql package, or set DATABASE_URL)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func (c *Cluster) dataDir() string   { return filepath.Join(c.Dir, "data") }
func (c *Cluster) socketDir() string { return filepath.Join(c.Dir, "run") }
func (c *Cluster) logFile() string   { return filepath.Join(c.Dir, "postgres.log") }

// URL returns a connection URL for database db on the cluster.
func (c *Cluster) URL(db string) string {
	q := url.Values{"host": {c.socketDir()}, "port": {strconv.Itoa(Port)}, "user": {Superuser}, "sslmode": {"disable"}}
	return "postgres:///" + db + "?" + q.Encode()
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmdPath := filepath.Join(c.bin, name)
	if c.runAs != "" {
		args = append([]string{"-u", c.runAs, "--", cmdPath}, args...)
		cmdPath = "runuser"
	}
	cmd := exec.CommandContext(ctx, cmdPath, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Running reports whether the cluster's server is up.
func (c *Cluster) Running(ctx context.Context) bool {
	return c.run(ctx, "pg_ctl", "status", "-D", c.dataDir()) == nil
}

// Start initialises the cluster if needed, starts it unless it is already
// running, creates database db if missing, and returns its URL. It reports
// whether this call started the server.
func (c *Cluster) Start(ctx context.Context, db string) (url string, started bool, err error) {
	if err := os.MkdirAll(c.socketDir(), 0o755); err != nil {
		return "", false, err
	}
	if c.runAs != "" {
		if err := exec.CommandContext(ctx, "chown", "-R", c.runAs, c.Dir).Run(); err != nil {
			return "", false, fmt.Errorf("chown %s to %s: %w", c.Dir, c.runAs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); err != nil {
		if err := c.run(ctx, "initdb", "-D", c.dataDir(), "-U", Superuser, "--auth=trust", "-E", "UTF8",
			"--locale=C", "--no-sync"); err != nil {
			return "", false, err
		}
	}
	if !c.Running(ctx) {
		opts := fmt.Sprintf("-k %s -c listen_addresses='' -p %d -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
			c.socketDir(), Port)
		if err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.dataDir(), "-l", c.logFile(), "-o", opts); err != nil {
			return "", false, err
		}
		started = true
	}
	if err := c.createDB(ctx, db); err != nil {
		return "", started, err
	}
	return c.URL(db), started, nil
}

func (c *Cluster) createDB(ctx context.Context, db string) error {
	if db == "postgres" {
		return nil
	}
	conn, err := store.ConnectAdmin(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to dev cluster: %w", err)
	}
	defer conn.Close()
	exists, err := conn.DatabaseExists(ctx, db)
	if err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if err := conn.Exec(ctx, `CREATE DATABASE `+store.QuoteIdentifier(db)); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// Stop stops the server (fast shutdown).
func (c *Cluster) Stop(ctx context.Context) error {
	if !c.Running(ctx) {
		return nil
	}
	return c.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", c.dataDir())
}
