// Package s3 is a backend.Store on an S3-compatible object store (AWS S3, MinIO, SeaweedFS,
// Ceph RGW, versitygw), through github.com/minio/minio-go/v7.
//
// Writes follow the upload protocol (docs/format.md §9): one PUT per object with
// If-None-Match: * (a 412 or 409 answer means the object exists: backend.ErrExist), a SHA-256
// checksum the server recomputes (a body damaged in transit is refused), Content-Type
// application/octet-stream, no user metadata, no tags, never multipart (versitygw and
// SeaweedFS ignore conditions on multipart uploads). Stat is one HEAD with checksum mode, so
// StatSHA256 returns the server's full-object SHA-256 when it has one. The client itself never
// retries; wrap the store in backend/retry (storeurl.Open does).
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/imgfs/imgfs/backend"
)

// Config describes one store: a bucket (and a key prefix inside it) on one endpoint.
type Config struct {
	Endpoint string // host:port
	Secure   bool   // https
	Bucket   string
	Prefix   string // key prefix without leading or trailing '/'; "" for none
	Region   string // default: $AWS_REGION, else us-east-1
	// AccessKey and SecretKey, when set, override the credential chain
	// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then the AWS credentials file).
	AccessKey, SecretKey string
	// Transport, when set, carries every request (tests record or disturb traffic with it).
	Transport http.RoundTripper
	// NoCreateBucket: fail at Open instead of creating a missing bucket.
	NoCreateBucket bool
}

// ParseURL parses "s3:http://HOST:PORT/BUCKET[/PREFIX][?region=R]" (or s3:https://...).
func ParseURL(raw string) (Config, error) {
	var c Config
	bad := func(why string) (Config, error) {
		return Config{}, backend.Permanent(fmt.Errorf("store URL %q: %s; the form is s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX][?region=REGION]", raw, why))
	}
	rest, ok := strings.CutPrefix(raw, "s3:")
	if !ok {
		return bad("not an s3: URL")
	}
	if strings.HasPrefix(rest, "//") {
		return bad("s3://BUCKET is not supported, name the endpoint")
	}
	u, err := url.Parse(rest)
	if err != nil {
		return bad(err.Error())
	}
	switch u.Scheme {
	case "http":
	case "https":
		c.Secure = true
	default:
		return bad("the endpoint must start with http:// or https://")
	}
	if u.Host == "" {
		return bad("no host")
	}
	if u.User != nil {
		return bad("credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	c.Endpoint = u.Host
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return bad("no bucket")
	}
	c.Bucket, c.Prefix, _ = strings.Cut(p, "/")
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Prefix != "" {
		if err := backend.ValidName(c.Prefix); err != nil {
			return bad("invalid prefix")
		}
	}
	q := u.Query()
	for k := range q {
		if k != "region" {
			return bad("unknown option " + k)
		}
	}
	c.Region = q.Get("region")
	return c, nil
}

// Store is the S3 backend.Store.
type Store struct {
	c      *minio.Client
	core   minio.Core
	bucket string
	prefix string // "" or "p/" with the trailing slash
	tr     *http.Transport
}

var (
	_ backend.Store        = (*Store)(nil)
	_ backend.SHA256Stater = (*Store)(nil)
	_ backend.Overwriter   = (*Store)(nil)
)

// Open opens the store a URL names (see ParseURL), creating the bucket if it is missing.
func Open(ctx context.Context, raw string) (*Store, error) {
	c, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return New(ctx, c)
}

// New opens the store c describes.
func New(ctx context.Context, c Config) (*Store, error) {
	region := c.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		// A fixed region spares the GetBucketLocation request minio-go makes otherwise.
		region = "us-east-1"
	}
	var creds *credentials.Credentials
	if c.AccessKey != "" || c.SecretKey != "" {
		creds = credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
		})
		v, err := creds.GetWithContext(nil)
		if err != nil || v.AccessKeyID == "" {
			return nil, backend.Permanent(errors.New("s3 store: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS credentials file)"))
		}
	}
	s := &Store{bucket: c.Bucket}
	if c.Prefix != "" {
		s.prefix = c.Prefix + "/"
	}
	rt := c.Transport
	if rt == nil {
		tr, err := minio.DefaultTransport(c.Secure)
		if err != nil {
			return nil, backend.Permanent(fmt.Errorf("s3 store: %w", err))
		}
		tr.MaxIdleConnsPerHost = 64
		s.tr = tr
		rt = tr
	}
	cl, err := minio.New(c.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    c.Secure,
		Transport: rt,
		Region:    region,
		// No trailing checksums: the SHA-256 is computed before sending (see putOptions).
		MaxRetries: 1, // retries belong to backend/retry, which knows the error classes
	})
	if err != nil {
		return nil, backend.Permanent(fmt.Errorf("s3 store %s: %w", c.Endpoint, err))
	}
	s.c = cl
	s.core = minio.Core{Client: cl}
	if err := s.ensureBucket(ctx, region, !c.NoCreateBucket); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) ensureBucket(ctx context.Context, region string, create bool) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return classify("open bucket", s.bucket, err)
	}
	if ok {
		return nil
	}
	if !create {
		return backend.Permanent(fmt.Errorf("s3 store: bucket %s does not exist", s.bucket))
	}
	err = s.c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return classify("create bucket", s.bucket, err)
	}
	return nil
}

// Key returns the object key of name (bucket-relative).
func (s *Store) Key(name string) string { return s.prefix + name }

// putOptions: a plain single PUT whose body SHA-256 is both signed (x-amz-content-sha256,
// so the server refuses a body changed in transit) and declared as the object's checksum
// (x-amz-checksum-sha256, so a HEAD with checksum mode returns it later).
func putOptions(sum []byte) minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableMultipart:     true,
		DisableContentSha256: true, // no aws-chunked streaming signature: the hash is known
		UserMetadata:         map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sum)},
	}
}

// Put stores the object with one conditional PUT (If-None-Match: *).
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.put(ctx, "put", name, r, size, true)
}

// Overwrite replaces the object with an unconditional PUT (repair of a poisoned object).
func (s *Store) Overwrite(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.put(ctx, "overwrite", name, r, size, false)
}

// PutIfMatch replaces the object only if its ETag is etag (If-Match); 412 gives
// backend.ErrPrecondition. Used by the store probe (backend/probe).
func (s *Store) PutIfMatch(ctx context.Context, name string, r io.Reader, size int64, etag string) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	body, sum, done, err := hashBody(r, size)
	if err != nil {
		return err
	}
	defer done()
	opts := putOptions(sum[:])
	opts.SetMatchETag(etag)
	_, err = s.core.PutObject(ctx, s.bucket, s.Key(name), body, size, "", hex.EncodeToString(sum[:]), opts)
	if er := minio.ToErrorResponse(err); err != nil && (er.StatusCode == http.StatusPreconditionFailed || er.Code == "PreconditionFailed") {
		return fmt.Errorf("s3 put-if-match %s: %w", name, backend.ErrPrecondition)
	}
	return classify("put-if-match", name, err)
}

func (s *Store) put(ctx context.Context, op, name string, r io.Reader, size int64, createOnly bool) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	if size < 0 {
		return backend.Permanent(fmt.Errorf("s3 %s %s: negative size", op, name))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	body, sum, done, err := hashBody(r, size)
	if err != nil {
		return fmt.Errorf("s3 %s %s: reading source: %w", op, name, err)
	}
	defer done()
	opts := putOptions(sum[:])
	if createOnly {
		opts.SetMatchETagExcept("*") // If-None-Match: *
	}
	_, err = s.core.PutObject(ctx, s.bucket, s.Key(name), body, size, "", hex.EncodeToString(sum[:]), opts)
	if !createOnly {
		return classify(op, name, err)
	}
	return classifyPut(op, name, err)
}

// memLimit: sources that cannot seek are held in memory up to this size, spooled to a
// temporary file (ciphertext only) above it.
const memLimit = 32 << 20

// hashBody reads size bytes of r once to compute their SHA-256 and returns a reader that
// replays them: r itself, rewound, when it can seek; a copy otherwise.
func hashBody(r io.Reader, size int64) (body io.Reader, sum [32]byte, done func(), err error) {
	done = func() {}
	h := sha256.New()
	if rs, ok := r.(io.ReadSeeker); ok {
		pos, err := rs.Seek(0, io.SeekCurrent)
		if err == nil {
			if _, err = io.CopyN(h, rs, size); err != nil {
				return nil, sum, done, shortSource(err)
			}
			if _, err = rs.Seek(pos, io.SeekStart); err != nil {
				return nil, sum, done, err
			}
			copy(sum[:], h.Sum(nil))
			return io.LimitReader(rs, size), sum, done, nil
		}
	}
	if size <= memLimit {
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, sum, done, shortSource(err)
		}
		h.Write(buf)
		copy(sum[:], h.Sum(nil))
		return bytes.NewReader(buf), sum, done, nil
	}
	f, err := os.CreateTemp("", "imgfs-s3-put-*")
	if err != nil {
		return nil, sum, done, err
	}
	os.Remove(f.Name())
	done = func() { f.Close() }
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		done()
		return nil, sum, func() {}, shortSource(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, sum, func() {}, err
	}
	copy(sum[:], h.Sum(nil))
	return f, sum, done, nil
}

func shortSource(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("source ended early: %w", err)
}

// Stat is one HEAD request.
func (s *Store) Stat(ctx context.Context, name string) (backend.Info, error) {
	info, _, err := s.StatSHA256(ctx, name)
	return info, err
}

// StatSHA256 is one HEAD request with x-amz-checksum-mode: ENABLED; sum is the server's
// full-object SHA-256, or nil when it has none (or only a composite one).
func (s *Store) StatSHA256(ctx context.Context, name string) (backend.Info, []byte, error) {
	if err := backend.ValidName(name); err != nil {
		return backend.Info{}, nil, err
	}
	oi, err := s.c.StatObject(ctx, s.bucket, s.Key(name), minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return backend.Info{}, nil, classify("stat", name, err)
	}
	var sum []byte
	if oi.ChecksumSHA256 != "" && !strings.Contains(oi.ChecksumSHA256, "-") &&
		(oi.ChecksumMode == "" || strings.EqualFold(oi.ChecksumMode, "FULL_OBJECT")) {
		if b, err := base64.StdEncoding.DecodeString(oi.ChecksumSHA256); err == nil && len(b) == 32 {
			sum = b
		}
	}
	return backend.Info{Name: name, Size: oi.Size}, sum, nil
}

// Get is one GET (with a Range header for partial reads). A range starting at or past the
// end reads as empty.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := backend.ValidName(name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, backend.Permanent(fmt.Errorf("s3 get %s: negative offset", name))
	}
	if length == 0 {
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	ranged := off > 0 || length > 0
	if ranged {
		end := int64(0) // bytes=off-
		if length > 0 {
			end = off + length - 1
		}
		if err := opts.SetRange(off, end); err != nil {
			return nil, backend.Permanent(fmt.Errorf("s3 get %s: %w", name, err))
		}
	}
	body, oi, hdr, err := s.core.GetObject(ctx, s.bucket, s.Key(name), opts)
	if err != nil {
		if er := minio.ToErrorResponse(err); er.StatusCode == http.StatusRequestedRangeNotSatisfiable || er.Code == "InvalidRange" {
			// The object exists (a missing one answers 404 first) but the range starts past
			// its end.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, classify("get", name, err)
	}
	want := oi.Size // Content-Length of this response
	if ranged {
		// Check the server answered the range asked for: a proxy or server that ignored it
		// would otherwise hand back the wrong bytes.
		start, stop, total, ok := parseContentRange(hdr.Get("Content-Range"))
		exp := total
		if length > 0 && off+length < total {
			exp = off + length
		}
		if !ok || start != off || stop+1 != exp || want != stop-start+1 {
			body.Close()
			return nil, backend.Transient(fmt.Errorf("s3 get %s: server answered range %q (%d bytes) for bytes %d+%d", name, hdr.Get("Content-Range"), want, off, length))
		}
	}
	return &bodyReader{rc: body, name: name, left: want}, nil
}

func parseContentRange(v string) (start, stop, total int64, ok bool) {
	v, ok = strings.CutPrefix(v, "bytes ")
	if !ok {
		return
	}
	rng, tot, ok := strings.Cut(v, "/")
	if !ok {
		return
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return
	}
	var e1, e2, e3 error
	start, e1 = strconv.ParseInt(a, 10, 64)
	stop, e2 = strconv.ParseInt(b, 10, 64)
	total, e3 = strconv.ParseInt(tot, 10, 64)
	ok = e1 == nil && e2 == nil && e3 == nil && start <= stop && stop < total
	return
}

// bodyReader classifies body errors and insists on exactly the announced length.
type bodyReader struct {
	rc   io.ReadCloser
	name string
	left int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, backend.Transient(fmt.Errorf("s3 get %s: body longer than announced", b.name))
	}
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		err = classify("get", b.name, err)
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }

// Delete removes the object: a HEAD (S3 answers a DELETE of a missing key with success, the
// interface wants ErrNotExist) and a DELETE.
func (s *Store) Delete(ctx context.Context, name string) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return err
	}
	err := s.c.RemoveObject(ctx, s.bucket, s.Key(name), minio.RemoveObjectOptions{})
	return classify("delete", name, err)
}

// List lists keys under the store's prefix + prefix.
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	if err := backend.ValidPrefix(prefix); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range s.c.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify("list", prefix, oi.Err)
		}
		name, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || backend.ValidName(name) != nil {
			continue // a folder marker or a key that is not one of ours
		}
		if err := fn(backend.Info{Name: name, Size: oi.Size}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Close releases idle connections.
func (s *Store) Close() error {
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	return nil
}

func classifyPut(op, name string, err error) error {
	if err == nil {
		return nil
	}
	er := minio.ToErrorResponse(err)
	switch {
	case er.StatusCode == http.StatusPreconditionFailed, er.Code == "PreconditionFailed",
		er.StatusCode == http.StatusConflict && !transientCodes[er.Code]:
		return fmt.Errorf("s3 %s %s: %w", op, name, backend.ErrExist)
	}
	return classify(op, name, err)
}

// Error codes a resend may cure: the body was damaged or cut in transit, or the server is
// busy.
var transientCodes = map[string]bool{
	"SlowDown": true, "InternalError": true, "ServiceUnavailable": true, "RequestTimeout": true,
	"BadDigest": true, "IncompleteBody": true, "XAmzContentSHA256Mismatch": true,
	"XAmzContentChecksumMismatch": true, "InvalidChunkSizeError": true, "RequestTimeTooSkewed": true,
	// 409 ConditionalRequestConflict: another conditional write of the key is in flight;
	// its outcome is unknown, so retry (the retry answers 412 if that write succeeded).
	"OperationAborted": true, "ConditionalRequestConflict": true,
}

// classify maps minio-go and network errors to the backend's classes.
func classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	msg := "s3 " + op + " " + name
	er := minio.ToErrorResponse(err)
	switch {
	case er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket":
		return fmt.Errorf("%s: %w", msg, backend.ErrNotExist)
	case er.Code == "QuotaExceeded" || er.StatusCode == http.StatusInsufficientStorage:
		return backend.Permanent(fmt.Errorf("%s: store full or over quota: %w", msg, err))
	case transientCodes[er.Code] || er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests ||
		er.StatusCode == http.StatusRequestTimeout:
		return backend.Transient(fmt.Errorf("%s: %w", msg, err))
	case er.StatusCode != 0:
		// 400 (bad request), 401/403 (credentials), 404 NoSuchBucket, 405, 411, ...
		return backend.Permanent(fmt.Errorf("%s: %w", msg, err))
	}
	// No HTTP answer: the network (backend.IsNetwork), a timeout, any other failure of the
	// HTTP client (a net.Error or *url.Error), a cut body.
	var ne net.Error
	var ue *url.Error
	switch {
	case backend.IsNetwork(err), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne), errors.As(err, &ue),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "broken pipe"),
		strings.Contains(err.Error(), "server closed"), strings.Contains(err.Error(), "EOF"):
		return backend.Transient(fmt.Errorf("%s: %w", msg, err))
	}
	if backend.IsTransient(err) || backend.IsPermanent(err) {
		return err
	}
	return backend.Permanent(fmt.Errorf("%s: %w", msg, err))
}
