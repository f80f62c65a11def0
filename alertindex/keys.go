package alertindex

import (
	"encoding/binary"
	"errors"
	"math"
)

// Key prefixes; see the package doc. Part of the on-disk format.
const (
	prefixCandid   = 'c'
	prefixObject   = 'o'
	prefixTime     = 't'
	prefixSky      = 's'
	prefixPosition = 'p'
	prefixMeta     = 'm'
)

// rowVersion is the first byte of an encoded Summary.
const rowVersion = 1

var errBadRow = errors.New("alertindex: bad summary row")

// candidKey orders candids as signed numbers (the 2016 prototypes'
// candids are negative).
func appendCandid(dst []byte, candid int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(candid)^(1<<63))
}

func readCandid(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// appendJD orders doubles as numbers: the sign bit flipped for positive
// values, every bit for negative ones.
func appendJD(dst []byte, jd float64) []byte {
	u := math.Float64bits(jd)
	if u&(1<<63) != 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(dst, u)
}

func readJD(b []byte) float64 {
	u := binary.BigEndian.Uint64(b)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	return math.Float64frombits(u)
}

func candidKey(candid int64) []byte { return appendCandid([]byte{prefixCandid}, candid) }

func objectKey(objectID string, candid int64) []byte {
	k := append([]byte{prefixObject}, objectID...)
	return appendCandid(append(k, 0), candid)
}

func timeKey(jd float64, candid int64) []byte {
	return appendCandid(appendJD([]byte{prefixTime}, jd), candid)
}

func skyKey(cell uint64, candid int64) []byte {
	return appendCandid(binary.BigEndian.AppendUint64([]byte{prefixSky}, cell), candid)
}

func partitionPrefix(topic string, partition int32) []byte {
	k := append([]byte{prefixPosition}, topic...)
	return binary.BigEndian.AppendUint32(append(k, 0), uint32(partition))
}

func positionKey(topic string, partition int32, offset int64) []byte {
	return binary.BigEndian.AppendUint64(partitionPrefix(topic, partition), uint64(offset))
}

// metaTopicKey holds a topic's count of indexed alerts.
func metaTopicKey(topic string) []byte { return append([]byte{prefixMeta, 't'}, topic...) }

// encodeRow is a Summary as stored under its candid and its time.
//
//	version 1 | candid 8 | ra 8 | dec 8 | jd 8 | fid 4 | magpsf 4 | sigmapsf 4 |
//	rb 4 | drb 4 | ndethist 4 | programid 4 | partition 4 | offset 8 |
//	len objectId 1 | objectId | len isdiffpos 1 | isdiffpos | topic (the rest)
//
// Numbers are little-endian.
func encodeRow(s *Summary) []byte {
	b := make([]byte, 0, 90+len(s.ObjectID)+len(s.Topic))
	b = append(b, rowVersion)
	le := binary.LittleEndian
	b = le.AppendUint64(b, uint64(s.Candid))
	b = le.AppendUint64(b, math.Float64bits(s.RA))
	b = le.AppendUint64(b, math.Float64bits(s.Dec))
	b = le.AppendUint64(b, math.Float64bits(s.JD))
	b = le.AppendUint32(b, uint32(s.Fid))
	for _, f := range []float32{s.MagPSF, s.SigmaPSF, s.RB, s.DRB} {
		b = le.AppendUint32(b, math.Float32bits(f))
	}
	b = le.AppendUint32(b, uint32(s.NDetHist))
	b = le.AppendUint32(b, uint32(s.ProgramID))
	b = le.AppendUint32(b, uint32(s.Partition))
	b = le.AppendUint64(b, uint64(s.Offset))
	b = append(b, byte(len(s.ObjectID)))
	b = append(b, s.ObjectID...)
	b = append(b, byte(len(s.IsDiffPos)))
	b = append(b, s.IsDiffPos...)
	return append(b, s.Topic...)
}

const rowFixed = 1 + 8*4 + 4*5 + 4*3 + 8

func decodeRow(b []byte) (Summary, error) {
	var s Summary
	if len(b) < rowFixed+2 || b[0] != rowVersion {
		return s, errBadRow
	}
	le := binary.LittleEndian
	p := 1
	u64 := func() uint64 { v := le.Uint64(b[p:]); p += 8; return v }
	u32 := func() uint32 { v := le.Uint32(b[p:]); p += 4; return v }
	s.Candid = int64(u64())
	s.RA = math.Float64frombits(u64())
	s.Dec = math.Float64frombits(u64())
	s.JD = math.Float64frombits(u64())
	s.Fid = int32(u32())
	s.MagPSF = math.Float32frombits(u32())
	s.SigmaPSF = math.Float32frombits(u32())
	s.RB = math.Float32frombits(u32())
	s.DRB = math.Float32frombits(u32())
	s.NDetHist = int32(u32())
	s.ProgramID = int32(u32())
	s.Partition = int32(u32())
	s.Offset = int64(u64())
	n := int(b[p])
	p++
	if len(b) < p+n+1 {
		return s, errBadRow
	}
	s.ObjectID = string(b[p : p+n])
	p += n
	n = int(b[p])
	p++
	if len(b) < p+n {
		return s, errBadRow
	}
	s.IsDiffPos = string(b[p : p+n])
	s.Topic = string(b[p+n:])
	return s, nil
}
