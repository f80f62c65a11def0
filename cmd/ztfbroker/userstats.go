package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// runUserStats is `ztfbroker user stats`: it reads the ztfbroker_user_*
// series from a running broker's /metrics and prints one row per user.
// Every such series is shown, so counters added later (failed logins)
// appear without a change here.
func runUserStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("user stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8080", "HTTP listener (host:port) of the running broker, serving /metrics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	stats, err := parseUserMetrics(resp.Body)
	if err != nil {
		return err
	}
	if len(stats.users) == 0 {
		return errors.New("no ztfbroker_user_* series at " + *addr + "/metrics")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "user\t")
	for _, c := range stats.columns {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprintln(tw)
	for _, u := range stats.users {
		fmt.Fprintf(tw, "%s\t", u)
		for _, c := range stats.columns {
			fmt.Fprintf(tw, "%s\t", strconv.FormatFloat(stats.values[u][c], 'f', -1, 64))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// userStats is the ztfbroker_user_* series by user and short name
// (ztfbroker_user_ and _total cut).
type userStats struct {
	users, columns []string
	values         map[string]map[string]float64
}

// parseUserMetrics reads Prometheus' text format, keeping the samples of
// ztfbroker_user_* series whose only label is user.
func parseUserMetrics(r io.Reader) (userStats, error) {
	const prefix = "ztfbroker_user_"
	st := userStats{values: map[string]map[string]float64{}}
	cols := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, rest, ok := strings.Cut(line, `{user="`)
		if !ok {
			continue
		}
		user, rest, ok := cutLabelValue(rest)
		if !ok || !strings.HasPrefix(rest, "} ") {
			continue
		}
		fields := strings.Fields(rest[2:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return st, fmt.Errorf("metrics: %q: %w", line, err)
		}
		col := strings.TrimSuffix(strings.TrimPrefix(name, prefix), "_total")
		if st.values[user] == nil {
			st.values[user] = map[string]float64{}
			st.users = append(st.users, user)
		}
		st.values[user][col] = v
		cols[col] = true
	}
	for c := range cols {
		st.columns = append(st.columns, c)
	}
	sort.Strings(st.columns)
	sort.Strings(st.users)
	return st, sc.Err()
}

// cutLabelValue reads an escaped label value up to its closing quote.
func cutLabelValue(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
