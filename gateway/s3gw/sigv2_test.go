package s3gw

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// sigV2 is base64(HMAC-SHA1(secret, stringToSign)). The tests write each
// StringToSign out by hand, so they share no canonicalization with the
// verifier.
func sigV2(secret, stringToSign string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// The examples of AWS's "Signing and authenticating REST requests" page
// (Signature Version 2), with its credentials exampleKeyID and
// exampleSecret. Each signature below is the page's; each was also
// recomputed from the page's StringToSign with
//
//	printf '<StringToSign>' | openssl dgst -sha1 -hmac "$exampleSecret" -binary | base64
//
// and matched. The gateway is path-style: a virtual-hosted example is
// sent with its bucket in the path, which gives the same
// CanonicalizedResource (the page says so).
func TestSigV2AWSExamples(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		target  string
		headers [][2]string
		sig     string
		wantSTS string
	}{
		{
			name:   "Object GET",
			method: "GET", target: "/awsexamplebucket1/photos/puppy.jpg",
			headers: [][2]string{{"Date", "Tue, 27 Mar 2007 19:36:42 +0000"}},
			sig:     "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
			wantSTS: "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
		},
		{
			name:   "Object PUT",
			method: "PUT", target: "/awsexamplebucket1/photos/puppy.jpg",
			headers: [][2]string{{"Content-Type", "image/jpeg"}, {"Content-Length", "94328"}, {"Date", "Tue, 27 Mar 2007 21:15:45 +0000"}},
			sig:     "iqRzw+ileNPu1fhspnRs8nOjjIA=",
			wantSTS: "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/awsexamplebucket1/photos/puppy.jpg",
		},
		{
			name:   "List: query parameters are not signed",
			method: "GET", target: "/awsexamplebucket1/?prefix=photos&max-keys=50&marker=puppy",
			headers: [][2]string{{"User-Agent", "Mozilla/5.0"}, {"Date", "Tue, 27 Mar 2007 19:42:41 +0000"}},
			sig:     "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
			wantSTS: "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/",
		},
		{
			name:   "Fetch: a subresource is signed",
			method: "GET", target: "/awsexamplebucket1/?acl",
			headers: [][2]string{{"Date", "Tue, 27 Mar 2007 19:44:46 +0000"}},
			sig:     "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
			wantSTS: "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl",
		},
		{
			name:   "Upload: x-amz-* headers lowercased, sorted, joined",
			method: "PUT", target: "/static.awsexamplebucket1.net/db-backup.dat.gz",
			headers: [][2]string{
				{"User-Agent", "curl/7.15.5"}, {"Date", "Tue, 27 Mar 2007 21:06:08 +0000"},
				{"x-amz-acl", "public-read"}, {"content-type", "application/x-download"},
				{"Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="},
				{"X-Amz-Meta-ReviewedBy", "joe@awsexamplebucket1.net"}, {"X-Amz-Meta-ReviewedBy", "jane@awsexamplebucket1.net"},
				{"X-Amz-Meta-FileChecksum", "0x02661779"}, {"X-Amz-Meta-ChecksumAlgorithm", "crc32"},
				{"Content-Disposition", "attachment; filename=database.dat"}, {"Content-Encoding", "gzip"}, {"Content-Length", "5913339"},
			},
			sig: "dKZcB+bz2EPXgSdXZp9ozGeOM4I=",
			wantSTS: "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n" +
				"x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n" +
				"x-amz-meta-reviewedby:joe@awsexamplebucket1.net,jane@awsexamplebucket1.net\n/static.awsexamplebucket1.net/db-backup.dat.gz",
		},
		{
			name:   "List all my buckets",
			method: "GET", target: "/",
			headers: [][2]string{{"Date", "Wed, 28 Mar 2007 01:29:59 +0000"}},
			sig:     "qGdzdERIC03wnaRNKh6OqZehG9s=",
			wantSTS: "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
		},
		{
			name:   "Unicode keys: the path is signed as sent",
			method: "GET", target: "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
			headers: [][2]string{{"Date", "Wed, 28 Mar 2007 01:49:49 +0000"}},
			sig:     "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
			wantSTS: "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
		},
		{
			// The page's Delete request, signed as its text says: with
			// x-amz-date, the Date line is empty and x-amz-date is
			// signed among the x-amz-* headers (as boto and the AWS SDK
			// for JavaScript sign). The page's own signature for it
			// (XbyTlbQdu9Xw5o8P4iMwPktxQd8=) puts x-amz-date's value in
			// the Date line instead, against its text; this one was
			// computed with openssl as above.
			name:   "Delete: x-amz-date replaces Date",
			method: "DELETE", target: "/awsexamplebucket1/photos/puppy.jpg",
			headers: [][2]string{{"User-Agent", "dotnet"}, {"Date", "Tue, 27 Mar 2007 21:20:27 +0000"}, {"x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"}},
			sig:     "Ri1hpB1zpS9pGqR7y8kuNFCl4sE=",
			wantSTS: "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			r.Host = "s3.us-west-1.amazonaws.com"
			var date string
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
				if strings.EqualFold(h[0], "Date") || strings.EqualFold(h[0], "x-amz-date") {
					date = h[1]
				}
			}
			now, err := time.Parse(time.RFC1123Z, date)
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "AWS "+exampleKeyID+":"+tc.sig)
			sig, aerr := exampleVerifier(now).verify(r, r.URL.Query())
			if aerr != nil {
				t.Fatalf("AWS's example rejected: %v\nstring to sign:\n%q", aerr, aerr.StringToSign)
			}
			if sig.accessKey != exampleKeyID || sig.payload != unsignedPayload {
				t.Errorf("signature %+v: want key %s, payload %s", sig, exampleKeyID, unsignedPayload)
			}
			// Another signature fails, and the reply shows the string
			// to sign.
			r.Header.Set("Authorization", "AWS "+exampleKeyID+":"+sigV2(exampleSecret, tc.wantSTS+"x"))
			_, aerr = exampleVerifier(now).verify(r, r.URL.Query())
			if aerr == nil || aerr.Code != "SignatureDoesNotMatch" {
				t.Fatalf("altered signature: %v", aerr)
			}
			if aerr.StringToSign != tc.wantSTS {
				t.Errorf("string to sign\n%q\nwant\n%q", aerr.StringToSign, tc.wantSTS)
			}
		})
	}
}

// The page's query-string example. Its signature was computed for the
// bucket the page used to name, johnsmith: openssl (as above) gives
// NpgCjnDzrM+WFzoENXmpNDUsSn8= for "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg",
// not for /awsexamplebucket1/photos/puppy.jpg.
func TestSigV2PresignedExample(t *testing.T) {
	const target = "/johnsmith/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620"
	expires := time.Unix(1175139620, 0)
	verify := func(target string, now time.Time) *apiError {
		r := httptest.NewRequest("GET", target, nil)
		_, aerr := exampleVerifier(now).verify(r, r.URL.Query())
		return aerr
	}
	if aerr := verify(target, expires.Add(-time.Hour)); aerr != nil {
		t.Fatalf("AWS's presigned example rejected: %v\nstring to sign:\n%q", aerr, aerr.StringToSign)
	}
	if aerr := verify(target, expires.Add(time.Second)); aerr == nil || aerr.Code != "AccessDenied" || !strings.Contains(aerr.Message, "Request has expired") {
		t.Errorf("expired presigned URL: %v", aerr)
	}
	for _, tampered := range []string{
		strings.Replace(target, "puppy", "kitten", 1),
		strings.Replace(target, "Expires=1175139620", "Expires=1175139621", 1),
		strings.Replace(target, "?", "?acl&", 1),
	} {
		if aerr := verify(tampered, expires.Add(-time.Hour)); aerr == nil || aerr.Code != "SignatureDoesNotMatch" {
			t.Errorf("tampered %s: %v", tampered, aerr)
		}
	}
	for _, bad := range []string{
		strings.Replace(target, "&Expires=1175139620", "", 1),
		strings.Replace(target, "Expires=1175139620", "Expires=tomorrow", 1),
	} {
		if aerr := verify(bad, expires.Add(-time.Hour)); aerr == nil || aerr.Code != "AccessDenied" {
			t.Errorf("malformed %s: %v", bad, aerr)
		}
	}
}

func TestSigV2Canonicalization(t *testing.T) {
	h := http.Header{}
	h.Add("X-Amz-Meta-B", "  two ")
	h.Add("X-Amz-Meta-B", "three")
	h.Add("x-amz-meta-a", "one")
	h.Add("X-Amz-Date", "Tue, 27 Mar 2007 21:20:26 +0000")
	h.Add("X-Amzn-Trace-Id", "not an x-amz- header")
	h.Add("Content-Type", "text/plain")
	if got, want := canonicalAmzHeaders(h), "x-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\nx-amz-meta-a:one\nx-amz-meta-b:two,three\n"; got != want {
		t.Errorf("canonicalAmzHeaders = %q, want %q", got, want)
	}
	for _, tc := range []struct{ query, want string }{
		{"", ""},
		{"prefix=a&max-keys=3&list-type=2", ""},
		{"uploads", "?uploads"},
		{"uploadId=U1&partNumber=2&foo=bar", "?partNumber=2&uploadId=U1"},
		{"versionId=&acl", "?acl&versionId"},
		{"delete", "?delete"},
		{"response-content-type=text%2Fplain&response-expires=Thu%2C+01+Dec+1994", "?response-content-type=text/plain&response-expires=Thu, 01 Dec 1994"},
		{"tagging&versionId=v1&website&cors&restore", "?cors&restore&tagging&versionId=v1&website"},
		{"retention", ""},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		if got := canonicalSubresources(q, sigV2Subresources); got != tc.want {
			t.Errorf("canonicalSubresources(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    string
		want time.Time
	}{
		{"Tue, 27 Mar 2007 19:36:42 +0000", time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC)},
		{"Tue, 27 Mar 2007 19:36:42 GMT", time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC)},
		{"Tue, 27 Mar 2007 21:36:42 +0200", time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC)},
		{"Tuesday, 27-Mar-07 19:36:42 GMT", time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC)},
		{"20070327T193642Z", time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC)},
	} {
		if got, ok := parseSigV2Date(tc.v); !ok || !got.Equal(tc.want) {
			t.Errorf("parseSigV2Date(%q) = %v, %v", tc.v, got, ok)
		}
	}
	if _, ok := parseSigV2Date("yesterday"); ok {
		t.Error("parseSigV2Date took \"yesterday\"")
	}
}

// TestSigV2ClientSubresources: minio-go signs subresources AWS's list
// does not have (retention, encryption, ...); a request carrying one is
// accepted whichever list its client signed with.
func TestSigV2ClientSubresources(t *testing.T) {
	const date = "Tue, 27 Mar 2007 19:36:42 +0000"
	now, _ := time.Parse(time.RFC1123Z, date)
	for _, resource := range []string{"/a/k?retention", "/a/k"} {
		r := httptest.NewRequest("GET", "/a/k?retention", nil)
		r.Header.Set("Date", date)
		r.Header.Set("Authorization", "AWS "+exampleKeyID+":"+sigV2(exampleSecret, "GET\n\n\n"+date+"\n"+resource))
		if _, aerr := exampleVerifier(now).verify(r, r.URL.Query()); aerr != nil {
			t.Errorf("signed with resource %s: %v", resource, aerr)
		}
	}
}

// v2Client sends requests to the test gateway, signed with SigV2 by
// hand.
type v2Client struct {
	t *testing.T
	g *testGateway
}

// request builds a request whose Authorization signs stringToSign, in
// which "{date}" stands for the Date header it gets (the gateway's
// time).
func (c v2Client) request(method, target string, body []byte, keyID, secret, stringToSign string) *http.Request {
	c.t.Helper()
	req, err := http.NewRequest(method, c.g.ts.URL+target, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	date := time.Now().UTC().Format(http.TimeFormat)
	req.Header.Set("Date", date)
	req.Header.Set("Authorization", "AWS "+keyID+":"+sigV2(secret, strings.ReplaceAll(stringToSign, "{date}", date)))
	return req
}

// do sends req and returns the reply's status, headers and body.
func (c v2Client) do(req *http.Request) (int, http.Header, string) {
	c.t.Helper()
	if req.Header.Get("X-Amz-Content-Sha256") != "" {
		c.t.Fatal("a SigV2 test request carries x-amz-content-sha256")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// want sends req and checks the reply's status and, for an error, its
// XML code.
func (c v2Client) want(what string, req *http.Request, status int, code string) (http.Header, string) {
	c.t.Helper()
	got, h, body := c.do(req)
	if got != status || code != "" && !strings.Contains(body, "<Code>"+code+"</Code>") {
		c.t.Errorf("%s: %d %s, want %d %s", what, got, body, status, code)
	}
	return h, body
}

func md5Base64(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func TestSigV2HeaderRequests(t *testing.T) {
	g := newTestGateway(t)
	c := v2Client{t, g}
	ctx := ctxT(t)
	body := []byte("signed with version 2")

	// PUT with Content-Type, Content-MD5 and an x-amz-* header, all
	// signed; no x-amz-content-sha256.
	req := c.request("PUT", "/a/v2/obj", body, testKeyID, testSecret,
		"PUT\n"+md5Base64(body)+"\ntext/plain\n{date}\nx-amz-meta-note:v2\n/a/v2/obj")
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Content-MD5", md5Base64(body))
	req.Header.Set("X-Amz-Meta-Note", "v2")
	c.want("SigV2 PUT", req, 200, "")
	out, err := g.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("a"), Key: aws.String("v2/obj")})
	if err != nil {
		t.Fatalf("the SigV2 PUT's object: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(got) != string(body) {
		t.Errorf("the SigV2 PUT stored %q", got)
	}

	// GET, with Date, then with x-amz-date (and an empty Date line).
	_, reply := c.want("SigV2 GET", c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "GET\n\n\n{date}\n/a/v2/obj"), 200, "")
	if reply != string(body) {
		t.Errorf("SigV2 GET: %q", reply)
	}
	amzDate := time.Now().UTC().Format(time.RFC1123Z)
	req = c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "GET\n\n\n\nx-amz-date:"+amzDate+"\n/a/v2/obj")
	req.Header.Del("Date")
	req.Header.Set("X-Amz-Date", amzDate)
	c.want("SigV2 GET with x-amz-date", req, 200, "")

	// A signed Content-MD5 that is not the body's: BadDigest, nothing
	// written.
	wrong := md5Base64([]byte("another body"))
	req = c.request("PUT", "/a/v2/bad-md5", body, testKeyID, testSecret, "PUT\n"+wrong+"\n\n{date}\n/a/v2/bad-md5")
	req.Header.Set("Content-MD5", wrong)
	c.want("SigV2 PUT with a wrong Content-MD5", req, 400, "BadDigest")
	if _, err := g.lakes.Stat(ctx, "/lake/a/v2/bad-md5"); err == nil {
		t.Error("a SigV2 body with a wrong Content-MD5 was written")
	}

	// Refusals.
	_, reply = c.want("wrong secret", c.request("GET", "/a/v2/obj", nil, testKeyID, "not-the-secret", "GET\n\n\n{date}\n/a/v2/obj"), 403, "SignatureDoesNotMatch")
	var e errorReply
	if err := xml.Unmarshal([]byte(reply), &e); err != nil || !strings.HasPrefix(e.StringToSign, "GET\n\n\n") || !strings.HasSuffix(e.StringToSign, "\n/a/v2/obj") {
		t.Errorf("SignatureDoesNotMatch does not show the string to sign (%v): %s", err, reply)
	}
	c.want("unknown key", c.request("GET", "/a/v2/obj", nil, "AKIDUNKNOWN", testSecret, "GET\n\n\n{date}\n/a/v2/obj"), 403, "InvalidAccessKeyId")
	c.want("signed for another key", c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "GET\n\n\n{date}\n/a/v2/other"), 403, "SignatureDoesNotMatch")
	req = c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "GET\n\n\n{date}\n/a/v2/obj")
	req.Header.Set("X-Amz-Meta-Added", "after signing")
	c.want("unsigned x-amz-* header", req, 403, "SignatureDoesNotMatch")
	req = c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "")
	req.Header.Set("Authorization", "AWS "+testKeyID)
	c.want("header without a signature", req, 400, "InvalidArgument")
	req = c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "GET\n\n\n\n/a/v2/obj")
	req.Header.Del("Date")
	c.want("no Date", req, 403, "AccessDenied")
	req = c.request("GET", "/a/v2/obj?AWSAccessKeyId="+testKeyID, nil, testKeyID, testSecret, "GET\n\n\n{date}\n/a/v2/obj")
	c.want("header and query signature", req, 400, "InvalidArgument")

	// A Date 20 minutes off the gateway's clock.
	stale := time.Now().Add(-20 * time.Minute).UTC().Format(http.TimeFormat)
	req = c.request("GET", "/a/v2/obj", nil, testKeyID, testSecret, "")
	req.Header.Set("Date", stale)
	req.Header.Set("Authorization", "AWS "+testKeyID+":"+sigV2(testSecret, "GET\n\n\n"+stale+"\n/a/v2/obj"))
	c.want("skewed Date", req, 403, "RequestTimeTooSkewed")
}

func TestSigV2Presigned(t *testing.T) {
	g := newTestGateway(t)
	c := v2Client{t, g}
	g.put("pre/v2 file.txt", []byte("presigned with version 2"))
	presign := func(method, path, subresources, query string, expires time.Time) string {
		exp := strconv.FormatInt(expires.Unix(), 10)
		sig := sigV2(testSecret, method+"\n\n\n"+exp+"\n"+path+subresources)
		u := g.ts.URL + path + "?" + query + "AWSAccessKeyId=" + testKeyID + "&Expires=" + exp + "&Signature=" + url.QueryEscape(sig)
		return u
	}
	get := func(u string) (int, http.Header, string) {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.do(req)
	}
	u := presign("GET", "/a/pre/v2%20file.txt", "", "", time.Now().Add(5*time.Minute))
	if code, _, body := get(u); code != 200 || body != "presigned with version 2" {
		t.Fatalf("SigV2 presigned GET: %d %q", code, body)
	}
	// A response header override is a signed subresource.
	u = presign("GET", "/a/pre/v2%20file.txt", "?response-content-type=text/x-v2", "response-content-type=text%2Fx-v2&", time.Now().Add(5*time.Minute))
	if code, h, body := get(u); code != 200 || h.Get("Content-Type") != "text/x-v2" {
		t.Errorf("SigV2 presigned GET with response-content-type: %d %s %s", code, h.Get("Content-Type"), body)
	}
	if code, _, body := get(strings.Replace(u, "text%2Fx-v2", "text%2Fhtml", 1)); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("tampered response-content-type: %d %s", code, body)
	}
	if code, _, body := get(strings.Replace(u, "v2%20file", "v2%20filX", 1)); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("tampered key: %d %s", code, body)
	}
	// Expired: signed properly, but for a time past.
	u = presign("GET", "/a/pre/v2%20file.txt", "", "", time.Now().Add(-time.Second))
	if code, _, body := get(u); code != 403 || !strings.Contains(body, "AccessDenied") || !strings.Contains(body, "expired") {
		t.Errorf("expired SigV2 presigned URL: %d %s", code, body)
	}
	// The gateway's clock moves past a valid URL's expiry.
	u = presign("GET", "/a/pre/v2%20file.txt", "", "", time.Now().Add(5*time.Minute))
	g.skew.Store(int64(6 * time.Minute))
	if code, _, body := get(u); code != 403 || !strings.Contains(body, "expired") {
		t.Errorf("SigV2 presigned URL after its expiry: %d %s", code, body)
	}
	g.skew.Store(0)
}

// TestSigV2Subresources runs a multipart upload and a multi-object
// delete signed with SigV2, whose subresources (?uploads, ?partNumber
// and ?uploadId, ?delete) are signed: the same signature on another
// subresource is refused.
func TestSigV2Subresources(t *testing.T) {
	g := newTestGateway(t)
	c := v2Client{t, g}
	ctx := ctxT(t)

	sts := "POST\n\n\n{date}\n/a/v2/mp?uploads"
	_, reply := c.want("CreateMultipartUpload", c.request("POST", "/a/v2/mp?uploads", nil, testKeyID, testSecret, sts), 200, "")
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal([]byte(reply), &created); err != nil || created.UploadID == "" {
		t.Fatalf("CreateMultipartUpload reply %q: %v", reply, err)
	}
	c.want("?uploads signature on no subresource", c.request("POST", "/a/v2/mp", nil, testKeyID, testSecret, sts), 403, "SignatureDoesNotMatch")
	c.want("?uploads signature on ?uploadId", c.request("POST", "/a/v2/mp?uploadId="+created.UploadID, nil, testKeyID, testSecret, sts), 403, "SignatureDoesNotMatch")

	part := []byte("the only part")
	id := url.QueryEscape(created.UploadID)
	sts = "PUT\n\n\n{date}\n/a/v2/mp?partNumber=1&uploadId=" + created.UploadID
	h, _ := c.want("UploadPart", c.request("PUT", "/a/v2/mp?partNumber=1&uploadId="+id, part, testKeyID, testSecret, sts), 200, "")
	c.want("part 1's signature on part 2", c.request("PUT", "/a/v2/mp?partNumber=2&uploadId="+id, part, testKeyID, testSecret, sts), 403, "SignatureDoesNotMatch")

	complete := []byte(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>` + h.Get("ETag") + `</ETag></Part></CompleteMultipartUpload>`)
	c.want("CompleteMultipartUpload", c.request("POST", "/a/v2/mp?uploadId="+id, complete, testKeyID, testSecret,
		"POST\n\n\n{date}\n/a/v2/mp?uploadId="+created.UploadID), 200, "")
	got, _, err := g.get("a", "v2/mp")
	if err != nil || string(got) != string(part) {
		t.Fatalf("the SigV2 multipart object: %q, %v", got, err)
	}

	del := []byte(`<Delete><Object><Key>v2/mp</Key></Object></Delete>`)
	sts = "POST\n" + md5Base64(del) + "\n\n{date}\n/a?delete"
	req := c.request("POST", "/a", del, testKeyID, testSecret, sts)
	req.Header.Set("Content-MD5", md5Base64(del))
	c.want("?delete signature on no subresource", req, 403, "SignatureDoesNotMatch")
	req = c.request("POST", "/a?delete", del, testKeyID, testSecret, sts)
	req.Header.Set("Content-MD5", md5Base64(del))
	c.want("DeleteObjects", req, 200, "")
	if _, err := g.lakes.Stat(ctx, "/lake/a/v2/mp"); err == nil {
		t.Error("the SigV2 DeleteObjects left its key")
	}
}

func TestSigV2Disabled(t *testing.T) {
	g := newTestGateway(t, func(c *Config, _ *testGateway) { c.DisableSigV2 = true })
	c := v2Client{t, g}
	g.put("k", []byte("v"))
	_, reply := c.want("SigV2 header", c.request("GET", "/a/k", nil, testKeyID, testSecret, "GET\n\n\n{date}\n/a/k"), 400, "InvalidRequest")
	if !strings.Contains(reply, "(Signature Version 2) is not supported") {
		t.Errorf("SigV2 header refused with %s", reply)
	}
	exp := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	u := "/a/k?AWSAccessKeyId=" + testKeyID + "&Expires=" + exp + "&Signature=" + url.QueryEscape(sigV2(testSecret, "GET\n\n\n"+exp+"\n/a/k"))
	req, err := http.NewRequest("GET", g.ts.URL+u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.want("SigV2 presigned URL", req, 400, "InvalidRequest")
	// SigV4 still works.
	if got, _, err := g.get("a", "k"); err != nil || string(got) != "v" {
		t.Errorf("SigV4 GET with SigV2 disabled: %q, %v", got, err)
	}
}
