package ufs

// SetS3CopyLimits lets tests force the multipart copy path on small
// objects.
func SetS3CopyLimits(fs FS, maxSingleCopy, partSize int64) {
	f := fs.(*s3FS)
	f.maxSingleCopy, f.copyPartSize = maxSingleCopy, partSize
}
