// Package archtest holds tests of the project's architecture rules, run
// over the module's own source.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyStoreImportsPgx: `store` is the only door to SQL. No other
// package's non-test code may import pgx (tests may read the database
// directly to assert outcomes).
func TestOnlyStoreImportsPgx(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/paymentd/paymentd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] == "github.com/paymentd/paymentd/store" {
			continue
		}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, "github.com/jackc/pgx") {
				t.Errorf("%s imports %s: only store may", fields[0], imp)
			}
		}
	}
}
