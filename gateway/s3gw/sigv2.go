package s3gw

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 2, as S3 checks it ("Signing and authenticating
// REST requests"), for clients that still sign that way (older s3cmd and
// boto, minio-go with SignV2). Both forms are accepted, against the same
// credentials as SigV4: the header "Authorization: AWS KeyID:Signature"
// and the presigned query (AWSAccessKeyId, Expires, Signature). The
// signature is base64(HMAC-SHA1(secret, StringToSign)), where
//
//	StringToSign = Method \n Content-MD5 \n Content-Type \n Date \n
//	               CanonicalizedAmzHeaders CanonicalizedResource
//
// Date is the Date header, empty when x-amz-date gives the time (it is
// then signed among the x-amz-* headers), and Expires for a presigned
// URL. SigV2 signs no payload hash and only some query parameters (the
// subresources below): a body is as safe as the Content-MD5 (or
// x-amz-checksum-*) header the client chose to sign, which the body
// reader checks (payload.go). That is why Config.DisableSigV2 exists.

// sigV2Prefix starts a SigV2 Authorization header ("AWS4-HMAC-SHA256"
// does not: the space matters).
const sigV2Prefix = "AWS "

// sigV2Subresources are the query parameters SigV2 signs as part of the
// CanonicalizedResource, in the order they are signed: the subresources
// AWS lists, the multi-object delete's "delete", and the GET response
// header overrides. Any other query parameter is not signed.
var sigV2Subresources = sortedStrings(
	"acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
	"requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
	"versions", "website",
	"response-cache-control", "response-content-disposition", "response-content-encoding",
	"response-content-language", "response-content-type", "response-expires",
)

// sigV2ClientSubresources are the subresources minio-go's SigV2 signer
// also signs, beyond AWS's list. A request carrying one is checked both
// ways, so that it gets the gateway's answer (NotImplemented, mostly)
// rather than SignatureDoesNotMatch, whichever list its client used.
var sigV2ClientSubresources = sortedStrings(
	"encryption", "legal-hold", "replication", "retention", "select", "select-type",
)

// sigV2AllSubresources are both lists.
var sigV2AllSubresources = sortedStrings(append(slices.Clone(sigV2Subresources), sigV2ClientSubresources...)...)

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

// hasSigV2Query reports whether the query carries a SigV2 presigned
// signature.
func hasSigV2Query(q url.Values) bool {
	return q.Has("AWSAccessKeyId") || q.Has("Signature")
}

// sigV2Refused is the answer to a SigV2 request when Config.DisableSigV2
// is set.
func sigV2Refused() *apiError {
	return s3err("InvalidRequest", "the authorization mechanism you have provided (Signature Version 2) is not supported; use AWS4-HMAC-SHA256")
}

// verifyHeaderV2 checks "Authorization: AWS KeyID:Signature".
func (v *verifier) verifyHeaderV2(r *http.Request, q url.Values, auth string) (*signature, *apiError) {
	if v.noSigV2 {
		return nil, sigV2Refused()
	}
	keyID, sig, ok := strings.Cut(strings.TrimPrefix(auth, sigV2Prefix), ":")
	keyID, sig = strings.TrimSpace(keyID), strings.TrimSpace(sig)
	if !ok || keyID == "" || sig == "" {
		return nil, s3err("InvalidArgument", "AWS authorization header is invalid; expected AwsAccessKeyId:signature")
	}
	t, dateLine, aerr := sigV2Time(r.Header)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := v.checkSkew(t); aerr != nil {
		return nil, aerr
	}
	secret, aerr := v.secretV2(keyID)
	if aerr != nil {
		return nil, aerr
	}
	return checkV2(r, q, keyID, secret, dateLine, sig)
}

// verifyPresignedV2 checks a URL presigned with SigV2: the StringToSign
// has Expires where the header form has Date, and the request's own
// Date and x-amz-date are not used.
func (v *verifier) verifyPresignedV2(r *http.Request, q url.Values) (*signature, *apiError) {
	if v.noSigV2 {
		return nil, sigV2Refused()
	}
	keyID, sig, expires := q.Get("AWSAccessKeyId"), q.Get("Signature"), q.Get("Expires")
	if keyID == "" || sig == "" || expires == "" {
		return nil, s3err("AccessDenied", "query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters")
	}
	secs, err := strconv.ParseInt(expires, 10, 64)
	if err != nil {
		return nil, s3err("AccessDenied", "invalid Expires %q: it should be seconds since the epoch", expires)
	}
	if at, now := time.Unix(secs, 0), v.now(); now.After(at) {
		return nil, s3err("AccessDenied", "Request has expired: it expired at %s, the server's time is %s", at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	secret, aerr := v.secretV2(keyID)
	if aerr != nil {
		return nil, aerr
	}
	return checkV2(r, q, keyID, secret, expires, sig)
}

func (v *verifier) secretV2(keyID string) (string, *apiError) {
	secret, ok := v.creds[keyID]
	if !ok {
		e := s3err("InvalidAccessKeyId", "the access key ID you provided does not exist in this gateway's credentials")
		e.AccessKeyID = keyID
		return "", e
	}
	return secret, nil
}

// checkV2 computes the request's StringToSign and compares its signature
// with the one the client sent. The path is signed as the client sent it
// (escaped, as AWS says); a client that signed the path encoded the
// canonical way but sent it otherwise is accepted too, as in check.
func checkV2(r *http.Request, q url.Values, keyID, secret, dateLine, sig string) (*signature, *apiError) {
	paths := []string{sentPath(r)}
	if p := canonicalURI(r.URL.Path); p != paths[0] {
		paths = append(paths, p)
	}
	lists := [][]string{sigV2Subresources}
	if slices.ContainsFunc(sigV2ClientSubresources, q.Has) {
		lists = append(lists, sigV2AllSubresources)
	}
	var e *apiError
	for _, p := range paths {
		for _, list := range lists {
			sts := stringToSignV2(r, dateLine, p+canonicalSubresources(q, list))
			want := base64.StdEncoding.EncodeToString(hmacSHA1(secret, sts))
			if hmac.Equal([]byte(want), []byte(sig)) {
				return &signature{accessKey: keyID, payload: unsignedPayload}, nil
			}
			if e == nil {
				e = s3err("SignatureDoesNotMatch", "the request signature we calculated does not match the signature you provided; check your key and signing method")
				e.AccessKeyID, e.StringToSign = keyID, sts
			}
		}
	}
	return nil, e
}

// stringToSignV2 is SigV2's StringToSign for the CanonicalizedResource
// resource.
func stringToSignV2(r *http.Request, dateLine, resource string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(r.Header.Get("Content-MD5"))
	b.WriteByte('\n')
	b.WriteString(r.Header.Get("Content-Type"))
	b.WriteByte('\n')
	b.WriteString(dateLine)
	b.WriteByte('\n')
	b.WriteString(canonicalAmzHeaders(r.Header))
	b.WriteString(resource)
	return b.String()
}

// canonicalAmzHeaders is the x-amz-* headers, one "name:value\n" line
// each: names lowercased and sorted, values trimmed, the values of one
// name joined by commas.
func canonicalAmzHeaders(h http.Header) string {
	values := map[string][]string{}
	for name, vals := range h {
		name = strings.ToLower(name)
		if !strings.HasPrefix(name, "x-amz-") {
			continue
		}
		for _, v := range vals {
			values[name] = append(values[name], strings.TrimSpace(v))
		}
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(values[name], ","))
		b.WriteByte('\n')
	}
	return b.String()
}

// canonicalSubresources is the signed part of the query: the parameters
// of list (sorted) that q has, each with its decoded value when it has
// one, as "?a&b=v".
func canonicalSubresources(q url.Values, list []string) string {
	var b strings.Builder
	for _, name := range list {
		if !q.Has(name) {
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(name)
		if v := q.Get(name); v != "" {
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return b.String()
}

// sentPath is the request's path as the client sent it, still escaped.
func sentPath(r *http.Request) string {
	if p, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(p, "/") {
		return p
	}
	return r.URL.EscapedPath()
}

// sigV2Time is the time of a header-signed SigV2 request and the Date
// line of its StringToSign: x-amz-date wins over Date, and then the Date
// line is empty.
func sigV2Time(h http.Header) (time.Time, string, *apiError) {
	if v := h.Get("X-Amz-Date"); v != "" {
		t, ok := parseSigV2Date(v)
		if !ok {
			return time.Time{}, "", s3err("AccessDenied", "x-amz-date %q is not an HTTP date", v)
		}
		return t, "", nil
	}
	if v := h.Get("Date"); v != "" {
		t, ok := parseSigV2Date(v)
		if !ok {
			return time.Time{}, "", s3err("AccessDenied", "Date %q is not an HTTP date", v)
		}
		return t, v, nil
	}
	return time.Time{}, "", s3err("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
}

// parseSigV2Date reads the date forms SigV2 clients send: the HTTP date
// forms, with "GMT" or a numeric zone ("+0000", as AWS's own examples
// have it), and SigV4's basic ISO 8601.
func parseSigV2Date(v string) (time.Time, bool) {
	for _, layout := range []string{http.TimeFormat, time.RFC1123Z, time.RFC1123, time.RFC850, time.ANSIC, amzDateFormat} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func hmacSHA1(key, data string) []byte {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(data))
	return m.Sum(nil)
}
