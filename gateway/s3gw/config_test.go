package s3gw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/router/routertest"
)

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := write("good", "# gateway keys\n\nAKIDONE secret/one+x\n  AKIDTWO   secret-two  \n", 0o600)
	creds, err := LoadCredentials(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 || creds["AKIDONE"] != "secret/one+x" || creds["AKIDTWO"] != "secret-two" {
		t.Errorf("parsed %d keys", len(creds))
	}
	for _, tc := range []struct {
		name, text string
		mode       os.FileMode
		want       string
	}{
		{"open", "AKIDONE secret\n", 0o644, "readable by group or others"},
		{"fields", "AKIDONE\n", 0o600, "fields:1: want"},
		{"three", "# c\nAKIDONE a b\n", 0o600, "three:2: want"},
		{"dup", "AKIDONE a\nAKIDONE b\n", 0o600, `dup:2: access key ID "AKIDONE" is already given on line 1`},
		{"badid", "AK/ID secret\n", 0o600, "badid:1: access key ID"},
		{"empty", "# nothing\n", 0o600, "no keys"},
	} {
		_, err := LoadCredentials(write(tc.name, tc.text, tc.mode))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") && tc.name != "open" {
			t.Errorf("%s: an error shows a secret: %v", tc.name, err)
		}
	}
}

func TestNewRefusals(t *testing.T) {
	lakes := routertest.New(t, "/lake/a")
	creds := Credentials{"AKIDTEST": "s"}
	spool := filepath.Join(t.TempDir(), "spool")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no auth", Config{Mounts: []string{"/lake/a"}}, "no credentials and no anonymous buckets"},
		{"same name", Config{Mounts: []string{"/lake/x/data", "/lake/y/data"}, Credentials: creds}, `both give bucket name "data"`},
		{"bad name", Config{Mounts: []string{"/lake/Data_Set"}, Credentials: creds}, `bucket name "Data_Set"`},
		{"bucket dir outside", Config{Mounts: []string{"/lake/a"}, BucketDir: "/elsewhere/buckets", Credentials: creds}, "not inside a mount"},
		{"anonymous unknown", Config{Mounts: []string{"/lake/a"}, Anonymous: []string{"zz"}}, `anonymous bucket "zz"`},
	} {
		tc.cfg.SpoolDir = spool
		_, err := New(lakes, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if _, err := New(lakes, Config{Mounts: []string{"/lake/a"}, Credentials: creds, SpoolDir: open}); err == nil || !strings.Contains(err.Error(), "spool directory") {
		t.Errorf("a spool directory open to others: %v", err)
	}
	s, err := New(lakes, Config{Mounts: []string{"/lake/a"}, Anonymous: []string{"a"}, SpoolDir: spool})
	if err != nil {
		t.Fatalf("anonymous-only gateway: %v", err)
	}
	s.Close()
}
