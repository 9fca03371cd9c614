package eventlog

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func raws(n int) []Raw {
	out := make([]Raw, n)
	for i := range out {
		out[i] = Raw{Agent: "a", Time: time.Now(), Type: "message.part.delta", Body: []byte(`{"type":"message.part.delta"}`)}
	}
	return out
}

func rawCount(t *testing.T, l *Log) int {
	t.Helper()
	var n int
	if err := l.db.QueryRow(`SELECT COUNT(*) FROM raw_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Raw events never take a commit of their own ahead of the events clients
// wait for: they ride with the next commit, else one comes after rawDelay,
// and closing the log stores those still held.
func TestRawEventsRideWithCommits(t *testing.T) {
	defer func(d time.Duration) { rawDelay = d }(rawDelay)
	ctx := context.Background()

	t.Run("with the next commit", func(t *testing.T) {
		rawDelay = time.Hour
		l := open(t, "")
		l.AddRaw(raws(3)...)
		commits, _ := l.Stats()
		if _, err := l.Append(ctx, delta("a", "x")); err != nil {
			t.Fatal(err)
		}
		if after, _ := l.Stats(); after != commits+1 {
			t.Fatalf("commits: %d, then %d: the raw events took a commit of their own", commits, after)
		}
		if n := rawCount(t, l); n != 3 {
			t.Fatalf("%d raw events stored with the commit, want 3", n)
		}
	})

	t.Run("after a while without one", func(t *testing.T) {
		rawDelay = 10 * time.Millisecond
		l := open(t, "")
		l.AddRaw(raws(2)...)
		deadline := time.Now().Add(10 * time.Second)
		for rawCount(t, l) != 2 {
			if time.Now().After(deadline) {
				t.Fatal("raw events never stored without another commit")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("on close", func(t *testing.T) {
		rawDelay = time.Hour
		path := filepath.Join(t.TempDir(), "taosagent.db")
		l := open(t, path)
		l.AddRaw(raws(4)...)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rawCount(t, open(t, path)); n != 4 {
			t.Fatalf("%d raw events stored on close, want 4", n)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		rawDelay = time.Hour
		path := filepath.Join(t.TempDir(), "taosagent.db")
		l := open(t, path)
		l.AddRaw(raws(rawMax + 5)...)
		if d := l.RawDropped(); d != 5 {
			t.Fatalf("dropped %d, want 5", d)
		}
		l.Close()
		if n := rawCount(t, open(t, path)); n != rawMax {
			t.Fatalf("%d raw events stored, want %d", n, rawMax)
		}
	})
}
