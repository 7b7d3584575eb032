package cachenode

import (
	"context"
	"encoding/binary"
	"fmt"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// Stats through the short-circuit socket. A reader on the node's host that
// opens many small files (a data loader, a FUSE mount's lookups) stats
// each one first; over gRPC each stat cost both processes more in HTTP/2
// framing than the node spends answering it from its metadata cache (a
// seventh of a FUSE mount's CPU on cold 100 KiB files). Op 7 asks the
// same question on the short-circuit socket and gets the same answer: the
// node's Stat, its entry, or its error as the gRPC status the gRPC Stat
// would have returned (code, message and details), so a client handles
// both alike.
//
// The wire format extends shortcircuit.go's:
//
//	request op 7: path (uint32 length + bytes)
//	response status 6: the entry (a nodepb.Entry, uint32 length +
//	  protobuf; length 0 on an error), then the error (a google.rpc.Status,
//	  uint32 length + protobuf; length 0 when there is none)
const (
	scOpStat    = 7
	scStatReply = 6
)

// answerStat answers op 7 with the node's Stat of p.
func (s *ShortCircuitServer) answerStat(p string) []byte {
	if s.cfg.Stat == nil {
		s.errs.Add(1)
		return scResponse(scError, "this node does not answer stats on its short-circuit socket")
	}
	ctx, cancel := context.WithTimeout(s.ctx, ShortCircuitFillTimeout)
	defer cancel()
	e, err := s.cfg.Stat(ctx, p)
	var eb, sb []byte
	if err != nil {
		st, _ := status.FromError(ToStatus(err))
		sb, err = proto.Marshal(st.Proto())
	} else {
		eb, err = proto.Marshal(e)
	}
	if err != nil {
		s.errs.Add(1)
		return scResponse(scError, err.Error())
	}
	s.stats.Add(1)
	le := binary.LittleEndian
	b := scResponse(scStatReply, "")
	b = appendSCString(b, string(eb))
	b = appendSCString(b, string(sb))
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// encodeSCStat encodes an op 7 request.
func encodeSCStat(p string) []byte {
	le := binary.LittleEndian
	b := make([]byte, 4, 4+8+4+len(p))
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, scOpStat)
	b = appendSCString(b, p)
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// decodeSCStatReply decodes an answer to op 7: the entry, or the node's
// error as a gRPC status error; an error wrapping ErrShortCircuitRefused
// when the node refused the request (one that does not know op 7), and
// errBadSCFrame when the answer makes no sense. answered reports whether
// the error, if any, is the node's answer.
func decodeSCStatReply(body []byte) (e *nodepb.Entry, answered bool, err error) {
	r, err := scHeader(body)
	if err != nil {
		return nil, false, err
	}
	switch st := r.u16(); st {
	case scStatReply:
	case scError:
		return nil, false, fmt.Errorf("%w: %s", ErrShortCircuitRefused, r.str())
	default:
		return nil, false, fmt.Errorf("%w: status %d", errBadSCFrame, st)
	}
	eb, sb := r.str(), r.str()
	if r.err != nil || len(r.b) != 0 {
		return nil, false, errBadSCFrame
	}
	if sb != "" {
		st := &spb.Status{}
		if err := proto.Unmarshal([]byte(sb), st); err != nil {
			return nil, false, fmt.Errorf("%w: stat error: %v", errBadSCFrame, err)
		}
		return nil, true, status.FromProto(st).Err()
	}
	e = &nodepb.Entry{}
	if err := proto.Unmarshal([]byte(eb), e); err != nil {
		return nil, false, fmt.Errorf("%w: stat entry: %v", errBadSCFrame, err)
	}
	return e, true, nil
}
