package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serve's log settings come from the YAML file, then the environment,
// then the flags, each overriding the one before; --log-json is
// --log-format json.
func TestServeLogSettingsPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "opsrunner.yaml")
	if err := os.WriteFile(file, []byte("log_format: json\nlog_level: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                  string
		env                   map[string]string
		args                  []string
		wantFormat, wantLevel string
	}{
		{"the file", nil, nil, "json", "warn"},
		{"the environment over the file", map[string]string{"OPSRUNNER_LOG_FORMAT": "text", "OPSRUNNER_LOG_LEVEL": "error"}, nil, "text", "error"},
		{"flags over the environment", map[string]string{"OPSRUNNER_LOG_FORMAT": "text", "OPSRUNNER_LOG_LEVEL": "error"},
			[]string{"--log-format", "json", "--log-level", "debug"}, "json", "debug"},
		{"--log-json over the environment", map[string]string{"OPSRUNNER_LOG_FORMAT": "text"}, []string{"--log-json"}, "json", "warn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"OPSRUNNER_CONFIG": file}
			for k, v := range tc.env {
				env[k] = v
			}
			getenv := func(k string) string { return env[k] }
			cmd := newServe(getenv)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := serveConfig(cmd, "", getenv)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.LogFormat != tc.wantFormat || cfg.LogLevel != tc.wantLevel {
				t.Errorf("format %q level %q, want %q %q", cfg.LogFormat, cfg.LogLevel, tc.wantFormat, tc.wantLevel)
			}
		})
	}
}

// Log flags that contradict each other or name no level are refused with
// a message that says why, by serve and by broker.
func TestLogFlagsRefuseBadValues(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-json", "--log-format", "text"}, `--log-json is --log-format json, and --log-format is "text"`},
		{[]string{"--log-level", "loud"}, `log_level must be debug, info, warn or error, got "loud"`},
		{[]string{"--log-format", "xml"}, `log_format must be text or json, got "xml"`},
	} {
		for _, cmd := range []struct {
			name string
			args []string
		}{{"serve", nil}, {"broker", []string{"--data-dir", "", "--addr", "127.0.0.1:0"}}} {
			t.Run(cmd.name+" "+strings.Join(tc.args, " "), func(t *testing.T) {
				root := newRoot(getenv)
				root.SetArgs(append(append([]string{cmd.name}, cmd.args...), tc.args...))
				root.SetOut(&strings.Builder{})
				root.SetErr(&strings.Builder{})
				err := root.Execute()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error with %q", err, tc.want)
				}
			})
		}
	}
}

// opsrunner broker reads OPSRUNNER_LOG_FORMAT and OPSRUNNER_LOG_LEVEL
// when its flags do not say (a bad value in the environment is refused,
// which shows it was read); a flag wins over the environment.
func TestBrokerLogSettingsFromTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"OPSRUNNER_LOG_LEVEL": "loud"}, nil, `log_level must be debug, info, warn or error, got "loud"`},
		{map[string]string{"OPSRUNNER_LOG_FORMAT": "xml"}, nil, `log_format must be text or json, got "xml"`},
		{map[string]string{"OPSRUNNER_LOG_FORMAT": "json"}, []string{"--log-format", "yaml"}, `log_format must be text or json, got "yaml"`},
	} {
		root := newRoot(func(k string) string { return tc.env[k] })
		root.SetArgs(append([]string{"broker", "--data-dir", "", "--addr", "127.0.0.1:0"}, tc.args...))
		root.SetOut(&strings.Builder{})
		root.SetErr(&strings.Builder{})
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("env %v args %v: got %v, want an error with %q", tc.env, tc.args, err, tc.want)
		}
	}
}
