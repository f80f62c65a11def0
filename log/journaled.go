package log

// The log's side of the journal (journal.go): which of its batches wait
// for the journal's fsync and which for its own segment's.

// journalEntry is a batch written under FlushAlways and not yet durable:
// end is the offset after it, pos its end in seg, seq its journal record
// (0: the journal did not take it, so a segment fsync is owed).
type journalEntry struct {
	end int64
	seg *segment
	pos int64
	seq uint64
}

// journalAppend hands a batch just written at pos of s to the journal and
// returns its record's sequence number, or 0 when the log fsyncs the
// segment for it (no journal, flush.ms > 0, too large, journal busy).
func (l *Log) journalAppend(s *segment, pos int64, batch []byte) uint64 {
	j := l.opts.Journal
	if j == nil || l.cfg.Flush != FlushAlways {
		return 0
	}
	seq, err := j.append(l, s.base, pos, batch)
	if err != nil {
		return 0
	}
	return seq
}

// noteJournaledLocked queues the batch just written (ending at l.written
// and s.size) for durability. The caller holds mu.
func (l *Log) noteJournaledLocked(s *segment, seq uint64) {
	l.journaling = seq != 0
	if l.opts.Journal == nil || l.cfg.Flush != FlushAlways {
		return
	}
	l.jq = append(l.jq, journalEntry{end: l.written, seg: s, pos: s.size, seq: seq})
	if seq == 0 {
		l.owed++
	}
	l.popJournaledLocked() // the journal's fsync may have covered it already
}

// journalSynced is the journal's word that its records below end are
// durable, or, failed, that its fsync failed: the log's batches it held
// are then owed a segment fsync (the bytes are in the segment).
func (l *Log) journalSynced(end uint64, failed bool) {
	l.mu.Lock()
	if failed {
		for i := range l.jq {
			if l.jq[i].seq != 0 {
				l.jq[i].seq = 0
				l.owed++
			}
		}
	} else {
		l.jSynced = max(l.jSynced, end)
		l.popJournaledLocked()
	}
	owed := l.owed > 0
	l.mu.Unlock()
	if owed {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// popJournaledLocked counts durable the batches at the head of jq whose
// records the journal has fsynced.
func (l *Log) popJournaledLocked() {
	i := 0
	for i < len(l.jq) && l.jq[i].seq != 0 && l.jq[i].seq < l.jSynced {
		i++
	}
	if i == 0 {
		return
	}
	e := l.jq[i-1]
	l.jq = l.jq[i:]
	if len(l.jq) == 0 {
		l.jq = nil
	}
	l.advanceDurableLocked(e.end, e.seg, e.pos)
}

// segSyncedLocked records that the segment files hold every offset below
// end fsynced (pos: its end in the active segment, 0 after a roll): the
// batches below it are durable whatever the journal did.
func (l *Log) segSyncedLocked(end, pos int64) {
	l.segDurable, l.segDurablePos = end, pos
	i := 0
	for i < len(l.jq) && l.jq[i].end <= end {
		if l.jq[i].seq == 0 {
			l.owed--
		}
		i++
	}
	l.jq = l.jq[i:]
	if len(l.jq) == 0 {
		l.jq = nil
	}
}
