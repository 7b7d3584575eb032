package s3gw

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sdkSigner is the AWS SDK's own signer, set up as the S3 client sets it.
var sdkSigner = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })

// The examples of AWS's "Signature Calculations for the Authorization
// Header" and "Query String Authentication" pages: access key
// AKIAIOSFODNN7EXAMPLE, 24 May 2013, us-east-1, bucket examplebucket.
const (
	exampleKeyID  = "AKIAIOSFODNN7EXAMPLE"
	exampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

var exampleTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

func exampleVerifier(now time.Time) *verifier {
	return &verifier{creds: Credentials{exampleKeyID: exampleSecret}, region: "us-east-1", now: func() time.Time { return now }}
}

func TestSigV4AWSExamples(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		target   string
		headers  map[string]string
		signed   string
		payload  string
		wantCReq string
		wantSig  string
	}{
		{
			name:   "GET object",
			method: "GET", target: "/test.txt",
			headers: map[string]string{"Range": "bytes=0-9", "X-Amz-Date": "20130524T000000Z"},
			signed:  "host;range;x-amz-content-sha256;x-amz-date",
			payload: emptySHA256,
			wantCReq: "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n" +
				"host;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			wantSig: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
		},
		{
			name:   "PUT object",
			method: "PUT", target: "/test$file.text",
			headers: map[string]string{"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Date": "20130524T000000Z", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY"},
			signed:  "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
			payload: "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
			wantCReq: "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\nx-amz-date:20130524T000000Z\n" +
				"x-amz-storage-class:REDUCED_REDUNDANCY\n\ndate;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n" +
				"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
			wantSig: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
		},
		{
			name:   "GET bucket lifecycle",
			method: "GET", target: "/?lifecycle",
			headers: map[string]string{"X-Amz-Date": "20130524T000000Z"},
			signed:  "host;x-amz-content-sha256;x-amz-date",
			payload: emptySHA256,
			wantCReq: "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n" +
				"host;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			wantSig: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
		},
		{
			name:   "GET bucket (list objects)",
			method: "GET", target: "/?max-keys=2&prefix=J",
			headers: map[string]string{"X-Amz-Date": "20130524T000000Z"},
			signed:  "host;x-amz-content-sha256;x-amz-date",
			payload: emptySHA256,
			wantCReq: "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n" +
				"host;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			wantSig: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://examplebucket.s3.amazonaws.com"+tc.target, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			r.Header.Set("X-Amz-Content-Sha256", tc.payload)
			creq := canonicalRequest(r, canonicalURI(r.URL.Path), strings.Split(tc.signed, ";"), tc.payload, false)
			if creq != tc.wantCReq {
				t.Errorf("canonical request\n%s\nwant\n%s", creq, tc.wantCReq)
			}
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+exampleKeyID+"/20130524/us-east-1/s3/aws4_request,SignedHeaders="+tc.signed+",Signature="+tc.wantSig)
			sig, aerr := exampleVerifier(exampleTime).verify(r, r.URL.Query())
			if aerr != nil {
				t.Fatalf("AWS's example rejected: %v\nstring to sign:\n%s", aerr, aerr.StringToSign)
			}
			if sig.accessKey != exampleKeyID {
				t.Errorf("access key %q", sig.accessKey)
			}
			// One changed byte of the signature fails.
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), tc.wantSig, "0"+tc.wantSig[1:], 1))
			if _, aerr := exampleVerifier(exampleTime).verify(r, r.URL.Query()); aerr == nil || aerr.Code != "SignatureDoesNotMatch" {
				t.Errorf("altered signature: %v", aerr)
			}
		})
	}
}

func TestSigV4PresignedExample(t *testing.T) {
	const url = "http://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
		"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
		"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
		"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
	r := httptest.NewRequest("GET", url, nil)
	if _, aerr := exampleVerifier(exampleTime.Add(time.Hour)).verify(r, r.URL.Query()); aerr != nil {
		t.Fatalf("AWS's presigned example rejected: %v", aerr)
	}
	if _, aerr := exampleVerifier(exampleTime.Add(25*time.Hour)).verify(r, r.URL.Query()); aerr == nil || aerr.Code != "AccessDenied" {
		t.Errorf("expired presigned URL: %v", aerr)
	}
	for _, tampered := range []string{
		strings.Replace(url, "test.txt", "test.tx", 1),
		strings.Replace(url, "Expires=86400", "Expires=86401", 1),
		url + "&extra=1",
	} {
		r := httptest.NewRequest("GET", tampered, nil)
		if _, aerr := exampleVerifier(exampleTime.Add(time.Hour)).verify(r, r.URL.Query()); aerr == nil || aerr.Code != "SignatureDoesNotMatch" {
			t.Errorf("tampered %s: %v", tampered, aerr)
		}
	}
	r = httptest.NewRequest("GET", strings.Replace(url, "Expires=86400", "Expires=604801", 1), nil)
	if _, aerr := exampleVerifier(exampleTime.Add(time.Hour)).verify(r, r.URL.Query()); aerr == nil || aerr.Code != "AuthorizationQueryParametersError" {
		t.Errorf("expiry over a week: %v", aerr)
	}
}

// The example of "Transferring Payload in Multiple Chunks": 65 KiB of
// 'a' in a 64 KiB chunk, a 1 KiB chunk and the final one.
func TestSigV4ChunkedExample(t *testing.T) {
	const seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
	body := "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n" + strings.Repeat("a", 65536) + "\r\n" +
		"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n" + strings.Repeat("a", 1024) + "\r\n" +
		"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
	newRequest := func(body string) *http.Request {
		r := httptest.NewRequest("PUT", "http://s3.amazonaws.com/examplebucket/chunkObject.txt", strings.NewReader(body))
		r.Header.Set("X-Amz-Date", "20130524T000000Z")
		r.Header.Set("X-Amz-Storage-Class", "REDUCED_REDUNDANCY")
		r.Header.Set("X-Amz-Content-Sha256", streamingSigned)
		r.Header.Set("Content-Encoding", "aws-chunked")
		r.Header.Set("X-Amz-Decoded-Content-Length", "66560")
		r.Header.Set("Content-Length", "66824")
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"+
			"SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature="+seed)
		return r
	}
	if len(body) != 66824 {
		t.Fatalf("example body is %d bytes, not 66824", len(body))
	}
	decode := func(body string) (string, error) {
		r := newRequest(body)
		sig, aerr := exampleVerifier(exampleTime).verify(r, r.URL.Query())
		if aerr != nil {
			t.Fatalf("AWS's chunked example (seed signature) rejected: %v", aerr)
		}
		s := &Server{}
		b, err := s.body(&request{Request: r, sig: sig}, nil)
		if err != nil {
			return "", err
		}
		out, err := io.ReadAll(b)
		return string(out), err
	}
	got, err := decode(body)
	if err != nil {
		t.Fatalf("AWS's chunked example rejected: %v", err)
	}
	if got != strings.Repeat("a", 66560) {
		t.Errorf("decoded %d bytes", len(got))
	}
	// A changed byte in a chunk, or a chunk signature, fails.
	for _, bad := range []string{
		strings.Replace(body, "aaaa\r\n400", "aaab\r\n400", 1),
		strings.Replace(body, "0055627c", "1055627c", 1),
		strings.Replace(body, "b6c6ea8a", "a6c6ea8a", 1),
	} {
		if _, err := decode(bad); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
			t.Errorf("altered chunked body: %v", err)
		}
	}
}

// TestChunkedUnsignedTrailer decodes the SDK's own aws-chunked form with a
// trailing checksum, and refuses a wrong checksum.
func TestChunkedUnsignedTrailer(t *testing.T) {
	payload := "Hello world"
	// CRC32 of "Hello world", base64: i9aeUg==
	body := "b\r\n" + payload + "\r\n0\r\nx-amz-checksum-crc32:i9aeUg==\r\n\r\n"
	decode := func(body string) (string, error) {
		r := httptest.NewRequest("PUT", "http://gw/a/k", strings.NewReader(body))
		r.Header.Set("X-Amz-Decoded-Content-Length", "11")
		r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		s := &Server{}
		b, err := s.body(&request{Request: r, sig: &signature{payload: streamingUnsignedTrailer}}, nil)
		if err != nil {
			return "", err
		}
		out, err := io.ReadAll(b)
		return string(out), err
	}
	if got, err := decode(body); err != nil || got != payload {
		t.Fatalf("decoded %q, %v", got, err)
	}
	if _, err := decode(strings.Replace(body, "i9aeUg==", "AAAAAA==", 1)); err == nil || !strings.Contains(err.Error(), "BadDigest") {
		t.Errorf("wrong trailing checksum: %v", err)
	}
	if _, err := decode(strings.Replace(body, "0\r\nx-amz", "", 1)); err == nil {
		t.Error("a body without its final chunk was accepted")
	}
	if _, err := decode("b\r\n" + payload[:5]); err == nil || !strings.Contains(err.Error(), "IncompleteBody") {
		t.Errorf("truncated body: %v", err)
	}
}

func TestCanonicalQueryAndURI(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", ""},
		{"uploads", "uploads="},
		{"b=2&a=1&a=0", "a=0&a=1&b=2"},
		{"prefix=a%20b%2Bc&delimiter=%2F", "delimiter=%2F&prefix=a%20b%2Bc"},
		{"list-type=2&prefix=%E6%97%A5", "list-type=2&prefix=%E6%97%A5"},
		{"X-Amz-Signature=abc&x=~._-", "X-Amz-Signature=abc&x=~._-"},
	} {
		if got := canonicalQuery(tc.raw, false); got != tc.want {
			t.Errorf("canonicalQuery(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
	if got := canonicalQuery("a=1&X-Amz-Signature=abc", true); got != "a=1" {
		t.Errorf("presigned canonical query keeps the signature: %q", got)
	}
	for _, tc := range []struct{ path, want string }{
		{"", "/"},
		{"/", "/"},
		{"/b/a b+c", "/b/a%20b%2Bc"},
		{"/b/日本", "/b/%E6%97%A5%E6%9C%AC"},
		{"/b/../x", "/b/../x"},
		{"/b/~a_b-c.d", "/b/~a_b-c.d"},
	} {
		if got := canonicalURI(tc.path); got != tc.want {
			t.Errorf("canonicalURI(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestSDKSignerAgreement signs requests with the SDK's signer (spaces,
// unicode, query strings, several values of a header) and checks the
// verifier agrees.
func TestSDKSignerAgreement(t *testing.T) {
	v := &verifier{creds: Credentials{testKeyID: testSecret}, region: "us-east-1", now: time.Now}
	for _, target := range []string{
		"/a/simple",
		"/a/with%20space/and+plus",
		"/a/%E6%97%A5%E6%9C%AC/%F0%9F%98%80",
		"/a?list-type=2&prefix=x%20y&delimiter=%2F&max-keys=10",
		"/a/k?uploads",
		"/a/k?partNumber=3&uploadId=ABC",
	} {
		req, err := http.NewRequest("GET", "http://127.0.0.1:9090"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Add("X-Amz-Meta-Multi", "one")
		req.Header.Add("X-Amz-Meta-Multi", "  two   spaced  ")
		signRequest(t, req, emptySHA256, time.Now())
		// What a server receives: parse the wire form back.
		var wire bytes.Buffer
		req.Write(&wire)
		got, err := http.ReadRequest(bufio.NewReader(&wire))
		if err != nil {
			t.Fatal(err)
		}
		if _, aerr := v.verify(got, got.URL.Query()); aerr != nil {
			t.Errorf("%s: %v\ncanonical request:\n%s", target, aerr, aerr.CanonicalRequest)
		}
	}
}
