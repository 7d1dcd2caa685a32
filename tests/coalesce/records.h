/* Numbered records, written by co_prog and checked by the coalesce suite:
 * every record arrives exactly once, in order per writer, intact.
 *
 *   "TTSSSSSSLLL" payload "\n"
 *   TT: writer (2 hex digits), SSSSSS: its sequence number (decimal),
 *   LLL: payload length (decimal, 0..REC_MAX_PAYLOAD), payload: bytes that
 *   depend on (writer, seq, index), never '\n'.
 *
 * A record is always written with one write(2), so "no interleaving inside
 * a record" is what a reader checks across threads. */
#ifndef CO_RECORDS_H
#define CO_RECORDS_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define REC_HDR 11
#define REC_MAX_PAYLOAD 200
#define REC_MAX (REC_HDR + REC_MAX_PAYLOAD + 1)
#define REC_WRITERS 64

static inline size_t rec_payload_len(unsigned w, unsigned seq)
{
    return (w * 37u + seq * 13u) % 61u; /* mostly small: coalescing food */
}

static inline char rec_byte(unsigned w, unsigned seq, size_t i)
{
    return (char)('a' + (w * 7u + seq * 3u + (unsigned)i) % 26u);
}

/* The record's bytes into buf (REC_MAX); returns its length. */
static inline size_t rec_make(char *buf, unsigned w, unsigned seq)
{
    size_t n = rec_payload_len(w, seq);
    char hdr[REC_HDR + 1];
    snprintf(hdr, sizeof hdr, "%02x%06u%03u", w & 0xff, seq % 1000000u,
             (unsigned)n);
    memcpy(buf, hdr, REC_HDR);
    for (size_t i = 0; i < n; i++)
        buf[REC_HDR + i] = rec_byte(w, seq, i);
    buf[REC_HDR + n] = '\n';
    return REC_HDR + n + 1;
}

static inline long rec_check_loose(const char *buf, size_t len,
                                   unsigned next[], unsigned loose_writer,
                                   unsigned char *seen, size_t nseen,
                                   char *why, size_t whylen);

/* Check a stream of records. next[w] is the sequence number expected next
 * from writer w (start at 0, or where an earlier stream stopped); updated.
 * Returns the number of records, or -1 with a description in why. */
static inline long rec_check(const char *buf, size_t len, unsigned next[],
                             char *why, size_t whylen)
{
    return rec_check_loose(buf, len, next, REC_WRITERS, NULL, 0, why, whylen);
}

/* The same, except that writer `loose_writer`'s records may come in any
 * order, each exactly once (seen[seq] marks them; next[] then counts). */
static inline long rec_check_loose(const char *buf, size_t len,
                                   unsigned next[], unsigned loose_writer,
                                   unsigned char *seen, size_t nseen,
                                   char *why, size_t whylen)
{
    size_t off = 0;
    long count = 0;
    while (off < len) {
        unsigned w, seq, n;
        char hdr[REC_HDR + 1];
        if (len - off < REC_HDR) {
            snprintf(why, whylen, "truncated header at %zu", off);
            return -1;
        }
        memcpy(hdr, buf + off, REC_HDR);
        hdr[REC_HDR] = 0;
        if (sscanf(hdr, "%2x%6u%3u", &w, &seq, &n) != 3 || w >= REC_WRITERS ||
            n != rec_payload_len(w, seq)) {
            snprintf(why, whylen, "bad header '%.11s' at %zu (record %ld)",
                     hdr, off, count);
            return -1;
        }
        if (w == loose_writer) {
            if (seq >= nseen || seen[seq]) {
                snprintf(why, whylen, "writer %u: record %u twice or bad", w,
                         seq);
                return -1;
            }
            seen[seq] = 1;
        } else if (seq != next[w]) {
            snprintf(why, whylen,
                     "writer %u: record %u where %u was due (offset %zu)", w,
                     seq, next[w], off);
            return -1;
        }
        if (len - off < REC_HDR + n + 1) {
            snprintf(why, whylen, "truncated record %u at %zu", seq, off);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (buf[off + REC_HDR + i] != rec_byte(w, seq, i)) {
                snprintf(why, whylen, "writer %u record %u: byte %zu wrong",
                         w, seq, i);
                return -1;
            }
        }
        if (buf[off + REC_HDR + n] != '\n') {
            snprintf(why, whylen, "writer %u record %u: no newline", w, seq);
            return -1;
        }
        next[w]++;
        off += REC_HDR + n + 1;
        count++;
    }
    return count;
}

#endif
