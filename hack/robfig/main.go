// robfig-next prints what robfig/cron v3 (the parser behind Kubernetes CronJobs) makes of cron
// expressions, for sundial's differential test. One JSON case per input line:
//
//	{"expr": "*/5 * * * *", "tz": "Europe/Berlin", "start": 1767225600, "n": 5}
//
// and one JSON answer per output line, in the same order: the parse error, or the parsed fields
// (bit sets as robfig holds them, the star bit included) and the next n fire times in Unix
// seconds, each found by Next from the previous one as a scheduler would.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/robfig/cron/v3"
)

type request struct {
	Expr  string `json:"expr"`
	Tz    string `json:"tz"`
	Start int64  `json:"start"`
	N     int    `json:"n"`
}

type fields struct {
	Second uint64 `json:"second,string"`
	Minute uint64 `json:"minute,string"`
	Hour   uint64 `json:"hour,string"`
	Dom    uint64 `json:"dom,string"`
	Month  uint64 `json:"month,string"`
	Dow    uint64 `json:"dow,string"`
}

type answer struct {
	Error  string  `json:"error,omitempty"`
	Fields *fields `json:"fields,omitempty"`
	Every  int64   `json:"every,omitempty"` // seconds, for @every
	Next   []int64 `json:"next"`            // 0 where robfig found none (it looks 5 years ahead)
}

// The parser Kubernetes uses is cron.ParseStandard (5 fields); sundial also takes a leading
// seconds field, so the seconds are optional here.
var parser = cron.NewParser(
	cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor,
)

func solve(req request) answer {
	loc, err := time.LoadLocation(req.Tz)
	if err != nil {
		return answer{Error: fmt.Sprintf("zone: %v", err)}
	}
	// The zone is given as the prefix robfig reads, so descriptors get it too.
	sched, err := parser.Parse(fmt.Sprintf("CRON_TZ=%s %s", req.Tz, req.Expr))
	if err != nil {
		return answer{Error: err.Error()}
	}
	out := answer{Next: []int64{}}
	switch s := sched.(type) {
	case *cron.SpecSchedule:
		out.Fields = &fields{s.Second, s.Minute, s.Hour, s.Dom, s.Month, s.Dow}
	case cron.ConstantDelaySchedule:
		out.Every = int64(s.Delay / time.Second)
	}
	t := time.Unix(req.Start, 0).In(loc)
	for i := 0; i < req.N; i++ {
		t = sched.Next(t)
		if t.IsZero() {
			out.Next = append(out.Next, 0)
			break
		}
		out.Next = append(out.Next, t.Unix())
	}
	return out
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "robfig-next: bad input line: %v\n", err)
			os.Exit(2)
		}
		if err := enc.Encode(solve(req)); err != nil {
			fmt.Fprintf(os.Stderr, "robfig-next: %v\n", err)
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "robfig-next: %v\n", err)
		os.Exit(2)
	}
}
