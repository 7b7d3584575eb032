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
// opens many small files (a data loader, a FUSE mount's lookups, an S3
// gateway's GETs) stats each one first; over gRPC each stat cost both
// processes more in HTTP/2 framing than the node spends answering it from
// its metadata cache (a seventh of a FUSE mount's CPU on cold 100 KiB
// files). Op 7 asks the same question on the short-circuit socket and
// gets the same answer: the node's Stat (or StatAttrs), its reply, or its
// error as the gRPC status the gRPC call would have returned (code,
// message and details), so a client handles both alike.
//
// The wire format extends shortcircuit.go's:
//
//	request op 7: path (uint32 length + bytes), flags uint16 (1: with
//	  the file's attrs, as StatAttrs)
//	response status 6: the reply (a nodepb.StatAttrsReply, uint32 length
//	  + protobuf; length 0 on an error), then the error (a
//	  google.rpc.Status, uint32 length + protobuf; length 0 when there is
//	  none)
const (
	scOpStat    = 7
	scStatReply = 6
)

// answerStat answers op 7 with the node's Stat of p, or StatAttrs.
func (s *ShortCircuitServer) answerStat(p string, withAttrs bool) []byte {
	if s.cfg.Stat == nil {
		s.errs.Add(1)
		return scResponse(scError, "this node does not answer stats on its short-circuit socket")
	}
	ctx, cancel := context.WithTimeout(s.ctx, ShortCircuitFillTimeout)
	defer cancel()
	r, err := s.cfg.Stat(ctx, p, withAttrs)
	var eb, sb []byte
	if err != nil {
		st, _ := status.FromError(ToStatus(err))
		sb, err = proto.Marshal(st.Proto())
	} else {
		eb, err = proto.Marshal(r)
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
func encodeSCStat(p string, withAttrs bool) []byte {
	le := binary.LittleEndian
	b := make([]byte, 4, 4+8+4+len(p)+2)
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, scOpStat)
	b = appendSCString(b, p)
	flags := uint16(0)
	if withAttrs {
		flags = 1
	}
	b = le.AppendUint16(b, flags)
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// decodeSCStatReply decodes an answer to op 7: the reply, or the node's
// error as a gRPC status error; an error wrapping ErrShortCircuitRefused
// when the node refused the request (one that does not know op 7), and
// errBadSCFrame when the answer makes no sense. answered reports whether
// the error, if any, is the node's answer.
func decodeSCStatReply(body []byte) (reply *nodepb.StatAttrsReply, answered bool, err error) {
	r, err := scHeader(body)
	if err != nil {
		return nil, false, err
	}
	switch st := r.u16(); st {
	case scStatReply:
	case scError:
		return nil, false, scRefusal(r.str())
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
	reply = &nodepb.StatAttrsReply{}
	if err := proto.Unmarshal([]byte(eb), reply); err != nil {
		return nil, false, fmt.Errorf("%w: stat reply: %v", errBadSCFrame, err)
	}
	return reply, true, nil
}

// ShortCircuitStat is its Stat, or StatAttrs when withAttrs, as
// ShortCircuitConfig.Stat asks it.
func (n *Node) ShortCircuitStat(ctx context.Context, p string, withAttrs bool) (*nodepb.StatAttrsReply, error) {
	req := &nodepb.StatRequest{Path: p}
	if withAttrs {
		return n.StatAttrs(ctx, req)
	}
	r, err := n.Stat(ctx, req)
	if err != nil {
		return nil, err
	}
	return &nodepb.StatAttrsReply{Entry: r.GetEntry()}, nil
}
