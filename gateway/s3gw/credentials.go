package s3gw

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Credentials are the access keys the gateway accepts: access key ID ->
// secret access key. Every key may do everything; there are no per-key
// permissions.
type Credentials map[string]string

// LoadCredentials reads a credentials file: one "ACCESS_KEY_ID
// SECRET_ACCESS_KEY" pair per line, blank lines and lines starting with
// '#' ignored. The file must not be readable by group or others (like an
// ssh key). Errors name the file and line, never a secret.
func LoadCredentials(name string) (Credentials, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	if mode := st.Mode().Perm(); mode&0o044 != 0 {
		return nil, fmt.Errorf("credentials file %s is readable by group or others (mode %04o); it holds secrets: chmod 600 %s", name, mode, name)
	}
	return ParseCredentials(f, name)
}

// ParseCredentials parses the credentials file format from r; name is
// used in errors.
func ParseCredentials(r io.Reader, name string) (Credentials, error) {
	creds := Credentials{}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	var errs []error
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			errs = append(errs, fmt.Errorf("%s:%d: want \"ACCESS_KEY_ID SECRET_ACCESS_KEY\", found %d fields", name, line, len(fields)))
			continue
		}
		id, secret := fields[0], fields[1]
		if problem := accessKeyProblem(id); problem != "" {
			errs = append(errs, fmt.Errorf("%s:%d: access key ID %q: %s", name, line, id, problem))
			continue
		}
		if first, dup := seen[id]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: access key ID %q is already given on line %d", name, line, id, first))
			continue
		}
		seen[id] = line
		creds[id] = secret
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("%s: no keys; write one \"ACCESS_KEY_ID SECRET_ACCESS_KEY\" pair per line", name)
	}
	return creds, nil
}

// accessKeyProblem checks an access key ID: it appears in the credential
// scope, which "/" separates, and in logs.
func accessKeyProblem(id string) string {
	if len(id) < 3 || len(id) > 128 {
		return "an access key ID has 3 to 128 characters"
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "an access key ID has only letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}
