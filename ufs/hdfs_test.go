package ufs_test

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
	"github.com/lakemesh/lakemesh/ufs/ufstest"
)

// TestHDFSConformance runs the suite against a real HDFS, each subtest in a
// fresh directory below LAKEMESH_TEST_HDFS, which it removes afterwards.
func TestHDFSConformance(t *testing.T) {
	base := os.Getenv("LAKEMESH_TEST_HDFS")
	if base == "" {
		// No HDFS can run on CI's machines, so this skip holds in CI too
		// (unlike Consul and MinIO, which CI always provides).
		t.Skip("skipped: set LAKEMESH_TEST_HDFS=hdfs://namenode:8020/some/dir to run the HDFS conformance suite")
	}
	base = strings.TrimSuffix(base, "/")
	parent := openLake(t, base)
	defer parent.Close()
	ufstest.Run(t, func(t *testing.T) ufs.FS {
		dir := "lakemesh-test-" + strings.ToLower(rand.Text()[:10])
		if err := parent.Mkdir(t.Context(), dir); err != nil {
			t.Fatalf("mkdir %s in %s: %v", dir, parent, err)
		}
		t.Cleanup(func() { removeTree(t, parent, dir) })
		return openLake(t, base+"/"+dir)
	})
}

// removeTree deletes dir and everything below it through the FS.
func removeTree(t *testing.T, fs ufs.FS, dir string) {
	ctx := t.Context()
	token := ""
	for {
		page, err := fs.List(ctx, dir, token, 0)
		if err != nil {
			t.Logf("clean up %s: %v", dir, err)
			return
		}
		for _, e := range page.Entries {
			if e.IsDir {
				removeTree(t, fs, e.Path)
			} else if err := fs.Delete(ctx, e.Path); err != nil {
				t.Logf("clean up %s: %v", e.Path, err)
			}
		}
		if page.Next == "" {
			break
		}
		token = page.Next
	}
	if err := fs.Delete(ctx, dir); err != nil {
		t.Logf("clean up %s: %v", dir, err)
	}
}

func TestHDFSOpenErrors(t *testing.T) {
	t.Setenv("HADOOP_CONF_DIR", t.TempDir())
	t.Setenv("HADOOP_HOME", "")
	for _, uri := range []string{
		"hdfs:///no/namenode",
		"hdfs://user@namenode:8020/x",
		"hdfs://namenode:8020/x?opt=1",
		"hdfs://namenode:8020/../x",
	} {
		if fs, err := ufs.Open(t.Context(), uri); err == nil {
			fs.Close()
			t.Errorf("open %q succeeded", uri)
		}
	}
}
