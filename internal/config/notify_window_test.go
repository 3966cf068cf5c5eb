package config_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

func TestNotifyWindow(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Fulfillment.NotifyWindow; got != 72*time.Hour {
		t.Errorf("fulfillment.notify_window = %s, want 72h", got)
	}
	if got := config.Defaults().Fulfillment.NotifyWindow; got != 72*time.Hour {
		t.Errorf("default notify window = %s, want 72h", got)
	}
	base, _ := os.ReadFile("../../config.yaml")
	bad := strings.Replace(string(base), "notify_window: 72h", "notify_window: -1h", 1)
	_, err = config.Parse([]byte(bad), noEnv)
	if err == nil || !strings.Contains(err.Error(), "fulfillment.notify_window: ") {
		t.Errorf("a negative notify window = %v, want a problem under fulfillment.notify_window", err)
	}
}
