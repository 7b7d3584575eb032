package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/gateway/s3gw"
)

func s3Cmd() *cobra.Command {
	var cf clientFlags
	var listen, credentialsFile, bucketDir, signingRegion, spoolDir string
	var anonymous []string
	var noSigV2 bool
	cmd := &cobra.Command{
		Use:   "s3 [flags]",
		Short: "Serve the namespace over the S3 API",
		Long: `Serve the namespace over the S3 API, so S3 tools (the AWS CLI and SDKs,
boto3, rclone) read and write the lakes through this region's cache nodes.
Requests are path-style: http://HOST:PORT/BUCKET/KEY.

Buckets: every mount is a bucket named by its path's last element:
/lake/s3-use1 is bucket s3-use1, and its key a/b/c is /lake/s3-use1/a/b/c.
Two mounts with the same last element (or one that is no valid bucket name)
stop the gateway at start. Mount buckets cannot be created or deleted over
S3. With --bucket-dir DIR (a directory inside a writable mount),
CreateBucket X makes the directory DIR/X, ListBuckets lists those too, and
DeleteBucket removes an empty one, so tools and test suites that make their
own buckets work unchanged.

Keys: a key must map to one path. A key with an empty, "." or ".." element,
a NUL byte or an element over 255 bytes is refused with InvalidArgument. A
key ending in "/" with an empty body is a directory. An object's
Content-Type, Content-Encoding, Content-Language, Content-Disposition,
Cache-Control, Expires and x-amz-meta-* user metadata (at most 2 KiB) are
stored with it in its lake and come back on GET and HEAD; an HDFS lake keeps
the bytes only (user metadata is refused there with NotImplemented). Tags,
ACLs and versions are not stored. ETags are the lake's file versions.
A request for a subresource the gateway does not implement (?versioning,
?tagging, ?acl, a versionId other than "null", ...) is answered
NotImplemented and changes nothing, whatever its method.

Checksums: Content-MD5 and every x-amz-checksum-* algorithm S3 knows
(crc32, crc32c, crc64nvme, md5, sha1, sha256, sha512, xxhash64, xxhash3,
xxhash128), as a header or a trailer, are verified while an upload
streams; a mismatch (BadDigest) writes nothing. A CompleteMultipartUpload's
checksum is the object's, full or composite, verified the same way. The
reply states the checksum; it is not stored, so GETs do not return it.

Authentication: every request is checked with AWS Signature Version 4 (the
Authorization header or a presigned URL, valid up to 7 days) against the
keys of the credentials file (--credentials, or $LAKEMESH_S3_CREDENTIALS):
one "ACCESS_KEY_ID SECRET_ACCESS_KEY" pair per line, '#' starts a comment,
and the file must not be readable by group or others. Clients sign for
--s3-region. Older clients' Signature Version 2 (header or presigned URL)
is accepted too; it is HMAC-SHA1 and signs no payload, so a body is checked
only by the Content-MD5 or checksum its client sends: --no-sigv2 refuses it.
--anonymous BUCKET lets unsigned requests read (GET, HEAD, list) that
bucket and nothing else. With neither credentials nor --anonymous the
gateway does not start. Secrets are never logged.

Multipart uploads are spooled to --spool-dir on this machine until they
complete: complete an upload through the gateway that began it.`,
		Example: `  printf 'gpu-team %s\n' "$(openssl rand -hex 20)" > s3.keys && chmod 600 s3.keys
  lakemesh s3 --node 10.0.0.5:7070 --credentials s3.keys --listen 0.0.0.0:9090
  aws --endpoint-url http://127.0.0.1:9090 s3 ls s3://s3-use1/train/
  lakemesh s3 --credentials s3.keys --bucket-dir /lake/s3-use1/buckets`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := newLogger(cf.logLevel)
			if credentialsFile == "" {
				credentialsFile = os.Getenv("LAKEMESH_S3_CREDENTIALS")
			}
			var creds s3gw.Credentials
			if credentialsFile != "" {
				var err error
				if creds, err = s3gw.LoadCredentials(credentialsFile); err != nil {
					return err
				}
			}
			if len(creds) == 0 && len(anonymous) == 0 {
				return errors.New("no credentials and no anonymous buckets: give --credentials FILE (or $LAKEMESH_S3_CREDENTIALS), or --anonymous BUCKET to serve a bucket without signatures")
			}
			c, err := cf.dial(ctx, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			var mounts []string
			for _, m := range c.Topology().Mounts {
				mounts = append(mounts, m.Path)
			}
			srv, err := s3gw.New(c, s3gw.Config{
				Mounts:       mounts,
				BucketDir:    bucketDir,
				Credentials:  creds,
				Anonymous:    anonymous,
				Region:       signingRegion,
				DisableSigV2: noSigV2,
				SpoolDir:     spoolDir,
				Logger:       log,
			})
			if err != nil {
				return err
			}
			defer srv.Close()
			prepCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = srv.PrepareBucketDir(prepCtx)
			cancel()
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			hs := &http.Server{
				Handler:           srv,
				ReadHeaderTimeout: 30 * time.Second,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			names, dir := srv.Buckets()
			log.Info("s3 gateway listening", "addr", ln.Addr().String(), "region", c.Region(),
				"buckets", strings.Join(names, ","), "bucket_dir", dir, "anonymous", strings.Join(anonymous, ","),
				"keys", len(creds), "signing_region", signingRegion, "sigv2", !noSigV2)
			served := make(chan error, 1)
			go func() { served <- hs.Serve(ln) }()
			select {
			case err := <-served:
				return fmt.Errorf("s3 gateway on %s: %w", listen, err)
			case <-ctx.Done():
			}
			log.Info("s3 gateway stopping: draining requests", "addr", ln.Addr().String())
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			if err := hs.Shutdown(sctx); err != nil {
				log.Warn("s3 gateway: requests still running after 30s, closing them", "err", err)
				hs.Close()
			}
			<-served
			log.Info("s3 gateway stopped")
			return nil
		},
	}
	cf.register(cmd)
	// The start line (address, buckets) is at info level.
	cf.logLevel = "info"
	cmd.Flags().Lookup("log-level").DefValue = "info"
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:9090", "address to serve S3 on")
	fl.StringVar(&credentialsFile, "credentials", "", `file of "ACCESS_KEY_ID SECRET_ACCESS_KEY" lines, mode 600 (default $LAKEMESH_S3_CREDENTIALS)`)
	fl.StringArrayVar(&anonymous, "anonymous", nil, "bucket that unsigned requests may read (repeatable)")
	fl.StringVar(&bucketDir, "bucket-dir", "", "directory inside a writable mount where CreateBucket makes buckets, e.g. /lake/s3-use1/buckets")
	fl.StringVar(&signingRegion, "s3-region", s3gw.DefaultRegion, "region clients sign requests for")
	fl.BoolVar(&noSigV2, "no-sigv2", false, "refuse AWS Signature Version 2 requests (HMAC-SHA1, no payload signed);\naccepted by default for older clients, as MinIO and Ceph do")
	fl.StringVar(&spoolDir, "spool-dir", s3gw.DefaultSpoolDir(), "local directory (mode 700) for multipart upload parts")
	return cmd
}
