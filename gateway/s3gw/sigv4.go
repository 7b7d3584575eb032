package s3gw

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 4, as S3 checks it. The verifier rebuilds the
// canonical request from what arrived, signs it with the secret of the
// request's access key and compares (in constant time); both forms are
// accepted: the Authorization header and the presigned URL query.
// Payload verification (a signed hash, aws-chunked chunk signatures,
// trailing checksums) happens while the body streams; see payload.go.
// verify also dispatches Signature Version 2 requests, to sigv2.go.

const (
	signAlgorithm            = "AWS4-HMAC-SHA256"
	unsignedPayload          = "UNSIGNED-PAYLOAD"
	streamingSigned          = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	emptySHA256              = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	amzDateFormat            = "20060102T150405Z"

	// maxClockSkew is how far a request's time may be from the
	// gateway's clock, as S3 allows.
	maxClockSkew = 15 * time.Minute
	// maxPresignExpiry is the longest a presigned URL may be valid.
	maxPresignExpiry = 7 * 24 * time.Hour
)

// signature is what a verified request was signed with: the payload
// readers need it to verify chunk signatures.
type signature struct {
	accessKey string
	payload   string // x-amz-content-sha256 as signed; UNSIGNED-PAYLOAD for presigned URLs and SigV2
	key       []byte // signing key of the scope
	amzDate   string // the request time as signed
	scope     string // date/region/s3/aws4_request
	seed      string // the request's own signature, which the first chunk's chains on
}

// verifier checks signatures against a set of credentials.
type verifier struct {
	creds   Credentials
	region  string
	now     func() time.Time
	noSigV2 bool // Config.DisableSigV2
}

// hasSignature reports whether a request carries any SigV4 or SigV2
// material; requests without are anonymous.
func hasSignature(r *http.Request, q url.Values) bool {
	return r.Header.Get("Authorization") != "" || hasSigV4Query(q) || hasSigV2Query(q)
}

// hasSigV4Query reports whether the query carries a SigV4 presigned
// signature.
func hasSigV4Query(q url.Values) bool {
	return q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential") || q.Has("X-Amz-Signature")
}

// verify checks a signed request; it returns nil, nil for an anonymous
// one. "Authorization: AWS " is SigV2, any other Authorization SigV4;
// a query with X-Amz-Algorithm is a SigV4 presigned URL, one with
// AWSAccessKeyId a SigV2 one.
func (v *verifier) verify(r *http.Request, q url.Values) (*signature, *apiError) {
	auth := r.Header.Get("Authorization")
	presigned, presignedV2 := hasSigV4Query(q), hasSigV2Query(q)
	switch {
	case auth != "" && presigned:
		return nil, s3err("InvalidArgument", "only one auth mechanism is allowed: the X-Amz-Algorithm query parameter or the Authorization header, not both")
	case presignedV2 && (auth != "" || presigned):
		return nil, s3err("InvalidArgument", "only one auth mechanism is allowed: the Authorization header, the X-Amz-Algorithm query parameter (SigV4) or the AWSAccessKeyId query parameter (SigV2)")
	case strings.HasPrefix(auth, sigV2Prefix):
		return v.verifyHeaderV2(r, q, auth)
	case auth != "":
		return v.verifyHeader(r, auth)
	case presigned:
		return v.verifyPresigned(r, q)
	case presignedV2:
		return v.verifyPresignedV2(r, q)
	}
	return nil, nil
}

// checkSkew refuses a request signed at t when t is further than
// maxClockSkew from the gateway's clock.
func (v *verifier) checkSkew(t time.Time) *apiError {
	if skew := v.now().Sub(t); skew > maxClockSkew || skew < -maxClockSkew {
		return s3err("RequestTimeTooSkewed", "the difference between the request time (%s) and the server's time (%s) is larger than %v", t.UTC().Format(time.RFC3339), v.now().UTC().Format(time.RFC3339), maxClockSkew)
	}
	return nil
}

func (v *verifier) verifyHeader(r *http.Request, auth string) (*signature, *apiError) {
	const malformed = "AuthorizationHeaderMalformed"
	rest, ok := strings.CutPrefix(auth, signAlgorithm+" ")
	if !ok {
		if strings.HasPrefix(auth, "AWS4-ECDSA-P256-SHA256") {
			return nil, s3err("NotImplemented", "Signature Version 4A is not supported; use AWS4-HMAC-SHA256")
		}
		return nil, s3err(malformed, "the authorization header must start with %s", signAlgorithm)
	}
	var credential, signedHeaders, sig string
	for part := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = val
		case "SignedHeaders":
			signedHeaders = val
		case "Signature":
			sig = val
		}
	}
	if credential == "" || signedHeaders == "" || sig == "" {
		return nil, s3err(malformed, "the authorization header is malformed: it needs Credential, SignedHeaders and Signature")
	}
	t, amzDate, aerr := requestTime(r)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := v.checkSkew(t); aerr != nil {
		return nil, aerr
	}
	scope, secret, aerr := v.credential(credential, t, malformed)
	if aerr != nil {
		return nil, aerr
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return nil, s3err("InvalidRequest", "missing required header for this request: x-amz-content-sha256")
	}
	if aerr := checkPayloadMode(payload); aerr != nil {
		return nil, aerr
	}
	signed := strings.Split(signedHeaders, ";")
	if !slices.Contains(signed, "host") {
		return nil, s3err(malformed, "the host header must be signed")
	}
	return v.check(r, signed, false, scope, secret, amzDate, sig, payload)
}

func (v *verifier) verifyPresigned(r *http.Request, q url.Values) (*signature, *apiError) {
	const malformed = "AuthorizationQueryParametersError"
	if q.Get("X-Amz-Algorithm") != signAlgorithm {
		return nil, s3err(malformed, "X-Amz-Algorithm only supports %q", signAlgorithm)
	}
	credential, date, expires := q.Get("X-Amz-Credential"), q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")
	signedHeaders, sig := q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature")
	if credential == "" || date == "" || expires == "" || signedHeaders == "" || sig == "" {
		return nil, s3err(malformed, "query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Expires parameters")
	}
	t, err := time.Parse(amzDateFormat, date)
	if err != nil {
		return nil, s3err(malformed, "X-Amz-Date %q is not in the form %s", date, amzDateFormat)
	}
	secs, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || secs < 0 {
		return nil, s3err(malformed, "X-Amz-Expires %q is not a non-negative number of seconds", expires)
	}
	if time.Duration(secs)*time.Second > maxPresignExpiry {
		return nil, s3err(malformed, "X-Amz-Expires must be less than a week (in seconds), that is, 604800")
	}
	now := v.now()
	if t.After(now.Add(maxClockSkew)) {
		return nil, s3err("AccessDenied", "request is not valid yet: signed for %s", t.UTC().Format(time.RFC3339))
	}
	if now.After(t.Add(time.Duration(secs) * time.Second)) {
		return nil, s3err("AccessDenied", "request has expired: signed at %s for %d seconds", t.UTC().Format(time.RFC3339), secs)
	}
	scope, secret, aerr := v.credential(credential, t, malformed)
	if aerr != nil {
		return nil, aerr
	}
	payload := q.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = unsignedPayload
	}
	if aerr := checkPayloadMode(payload); aerr != nil {
		return nil, aerr
	}
	signed := strings.Split(signedHeaders, ";")
	if !slices.Contains(signed, "host") {
		return nil, s3err(malformed, "the host header must be signed")
	}
	return v.check(r, signed, true, scope, secret, date, sig, payload)
}

// credentialScope is the parsed Credential of a request.
type credentialScope struct {
	accessKey, date, region string
}

func (c credentialScope) String() string { return c.date + "/" + c.region + "/s3/aws4_request" }

// credential parses and checks "AKID/20130524/us-east-1/s3/aws4_request"
// and finds the key's secret.
func (v *verifier) credential(cred string, t time.Time, malformed string) (credentialScope, string, *apiError) {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return credentialScope{}, "", s3err(malformed, "credential %q is malformed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"", cred)
	}
	c := credentialScope{accessKey: parts[0], date: parts[1], region: parts[2]}
	if parts[3] != "s3" {
		return c, "", s3err(malformed, "credential should be scoped to the correct service: 's3', not %q", parts[3])
	}
	if c.region != v.region {
		e := s3err(malformed, "the authorization header is malformed; the region '%s' is wrong; expecting '%s'", c.region, v.region)
		e.Region = v.region
		return c, "", e
	}
	if want := t.UTC().Format("20060102"); c.date != want {
		return c, "", s3err(malformed, "credential date %q does not match the request date %q", c.date, want)
	}
	secret, ok := v.creds[c.accessKey]
	if !ok {
		e := s3err("InvalidAccessKeyId", "the access key ID you provided does not exist in this gateway's credentials")
		e.AccessKeyID = c.accessKey
		return c, "", e
	}
	return c, secret, nil
}

// check computes the signature of the request's canonical form and
// compares it with the one the client sent. The canonical URI is the
// decoded path encoded as SigV4 says; a client that signed the path
// exactly as it sent it (a '+' left raw, say) is accepted too, since
// both name the same request target.
func (v *verifier) check(r *http.Request, signed []string, presigned bool, scope credentialScope, secret, amzDate, sig, payload string) (*signature, *apiError) {
	key := signingKey(secret, scope.date, scope.region)
	uris := []string{canonicalURI(r.URL.Path)}
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(raw, "/") && raw != uris[0] {
		uris = append(uris, raw)
	}
	var e *apiError
	for _, uri := range uris {
		creq := canonicalRequest(r, uri, signed, payload, presigned)
		sts := stringToSign(amzDate, scope.String(), creq)
		want := hex.EncodeToString(hmacSHA256(key, sts))
		if hmac.Equal([]byte(want), []byte(sig)) {
			return &signature{accessKey: scope.accessKey, payload: payload, key: key, amzDate: amzDate, scope: scope.String(), seed: sig}, nil
		}
		if e == nil {
			e = s3err("SignatureDoesNotMatch", "the request signature we calculated does not match the signature you provided; check your key and signing method")
			e.AccessKeyID, e.StringToSign, e.CanonicalRequest = scope.accessKey, sts, creq
		}
	}
	return nil, e
}

// checkPayloadMode checks x-amz-content-sha256: a hex SHA-256 or one of
// the named modes.
func checkPayloadMode(p string) *apiError {
	switch p {
	case unsignedPayload, streamingSigned, streamingSignedTrailer, streamingUnsignedTrailer:
		return nil
	case "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER":
		return s3err("NotImplemented", "Signature Version 4A payloads are not supported")
	}
	if len(p) == 64 {
		if _, err := hex.DecodeString(p); err == nil {
			return nil
		}
	}
	return s3err("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a hex SHA-256")
}

// requestTime is the signed time of a header-signed request: x-amz-date,
// else Date.
func requestTime(r *http.Request) (time.Time, string, *apiError) {
	if v := r.Header.Get("X-Amz-Date"); v != "" {
		t, err := time.Parse(amzDateFormat, v)
		if err != nil {
			return time.Time{}, "", s3err("AccessDenied", "x-amz-date %q is not in the form %s", v, amzDateFormat)
		}
		return t, v, nil
	}
	if v := r.Header.Get("Date"); v != "" {
		t, err := http.ParseTime(v)
		if err != nil {
			return time.Time{}, "", s3err("AccessDenied", "Date %q is not an HTTP date", v)
		}
		return t, t.UTC().Format(amzDateFormat), nil
	}
	return time.Time{}, "", s3err("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
}

// canonicalRequest is SigV4's canonical form of r: method, URI, query,
// the signed headers and the payload hash, one per line.
func canonicalRequest(r *http.Request, uri string, signedHeaders []string, payload string, presigned bool) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery, presigned))
	b.WriteByte('\n')
	for _, h := range signedHeaders {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(canonicalHeaderValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

// canonicalURI encodes the decoded path once, as S3 signs it (no
// double encoding, no dot-segment removal).
func canonicalURI(p string) string {
	if p == "" {
		return "/"
	}
	return uriEncode(p, false)
}

// canonicalQuery sorts the decoded query parameters by name, then value,
// and encodes each strictly. A presigned request leaves out its own
// signature.
func canonicalQuery(raw string, presigned bool) string {
	type pair struct{ k, v string }
	var pairs []pair
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, pair{uriEncode(k, true), uriEncode(v, true)})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// canonicalHeaderValue is a signed header's value: trimmed, inner runs of
// spaces folded, several values joined by commas. Go's server moves Host
// and Transfer-Encoding out of the header map; they are put back here.
func canonicalHeaderValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "transfer-encoding":
		return strings.Join(r.TransferEncoding, ",")
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v
		}
		if r.ContentLength > 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
	}
	vals := r.Header.Values(name)
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// uriEncode is SigV4's URI encoding: every byte but the unreserved ones
// (A-Z a-z 0-9 - . _ ~) as %XX, and '/' too when encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func stringToSign(amzDate, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return signAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// signingKey derives the key of one day, region and service from a
// secret.
func signingKey(secret, date, region string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, "s3")
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
