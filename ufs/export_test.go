package ufs

// SetS3CopyLimits lets tests force the multipart copy path on small
// objects.
func SetS3CopyLimits(fs FS, maxSingleCopy, partSize int64) {
	f := fs.(*s3FS)
	f.maxSingleCopy, f.copyPartSize = maxSingleCopy, partSize
}

// S3LeanGets reports whether an S3 lake sends GETs itself (s3_get.go),
// and how many it answered and left to the SDK.
func S3LeanGets(fs FS) (enabled bool, served, fellBack int64) {
	g := fs.(*s3FS).lean
	if g == nil {
		return false, 0, 0
	}
	return true, g.served.Load(), g.fellBack.Load()
}

// S3LeanHeads reports the HEADs an S3 lake answered without the SDK and
// those it left to it.
func S3LeanHeads(fs FS) (served, fellBack int64) {
	g := fs.(*s3FS).lean
	if g == nil {
		return 0, 0
	}
	return g.heads.Load(), g.headsFellBack.Load()
}

// S3WithoutLean makes an S3 lake send every request through the SDK.
func S3WithoutLean(fs FS) { fs.(*s3FS).lean = nil }
