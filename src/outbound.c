/*
 * outbound.c: where the server may connect (API.md §7, outbound
 * destinations).
 *
 * Two rules.  Link-local addresses (169.254.0.0/16, fe80::/10: cloud
 * metadata services) are never contacted, whoever configured the host.
 * And [k8s_auth] allowed_hosts, a comma list of host globs
 * ("*.k8s.example.com") and CIDRs ("10.20.0.0/16", "fd00::/8"; a bare
 * address is a /32 or /128), limits where an instance whose host was set
 * by a non-admin may point; an empty list allows any other host.
 *
 * A destination is allowed when its host name matches a glob, or when
 * the address actually connected to lies in a CIDR.  The check runs
 * twice: when the host is written (outbound_host_allowed: a name matching
 * no glob passes only when the list has CIDRs, an address literal must
 * lie in one) and when fetch.c opens the socket (outbound_addr_allowed,
 * from CURLOPT_OPENSOCKETFUNCTION), so a name that resolves elsewhere by
 * then (DNS rebinding) gets no connection.  Behind [k8s_auth] proxy
 * only the proxy's address is seen, so the host must pass by its text
 * (outbound_proxied_allowed): a glob, or an address literal in a CIDR.
 *
 * Pure functions over immutable rules, safe from any thread; never
 * blocks (no DNS: names are only matched as text).
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8sauth.h"

#define OUTBOUND_MAX_ENTRIES 256

/* One CIDR: family, network bytes (4 or 16) and prefix length. */
struct outbound_cidr {
	int family;
	unsigned char net[16];
	int bits;
};

struct outbound_rules {
	struct strlist globs; /* lowercase host globs */
	struct outbound_cidr *cidrs;
	size_t ncidrs;
};

/* Free rules (NULL: no-op). */
void
outbound_rules_free(struct outbound_rules *rules)
{
	if (rules == NULL)
		return;
	strlist_free(&rules->globs);
	free(rules->cidrs);
	free(rules);
}

/* An address literal (IPv4 in any inet_aton form, or IPv6): 4, 16 or 0. */
static int
outbound_parse_addr(const char *s, unsigned char out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 0xff, 0xff };

		if (memcmp(out, mapped, sizeof mapped) != 0)
			return (16);
		memmove(out, out + 12, 4); /* ::ffff:a.b.c.d is IPv4 */
		return (4);
	}
	if (inet_aton(s, &a4) == 1) {
		memcpy(out, &a4.s_addr, 4);
		return (4);
	}
	return (0);
}

/* Parse one CIDR entry ("a.b.c.d/n", "x::/n" or a bare address). */
static int
outbound_parse_cidr(const char *s, struct outbound_cidr *c)
{
	char buf[64], *slash;
	long bits;
	int len;

	if (strlen(s) >= sizeof buf)
		return (-1);
	memcpy(buf, s, strlen(s) + 1);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if ((len = outbound_parse_addr(buf, c->net)) == 0)
		return (-1);
	c->family = len == 4 ? AF_INET : AF_INET6;
	c->bits = len * 8;
	if (slash != NULL) {
		if (util_parse_long(slash, 0, len * 8, &bits) != 0)
			return (-1);
		c->bits = (int)bits;
	}
	return (0);
}

/* Is the entry an address or CIDR (digits, dots, colons, a slash)? */
static int
outbound_is_cidr(const char *s)
{
	if (strchr(s, '/') != NULL || strchr(s, ':') != NULL)
		return (1);
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s) && *s != '.')
			return (0);
	}
	return (1);
}

/* Add one trimmed entry to the rules; -1 with *cause. */
static int
outbound_rules_add(struct outbound_rules *rules, const char *e, char **cause)
{
	struct outbound_cidr c;
	char *low;
	size_t i;

	if (rules->globs.n + rules->ncidrs >= OUTBOUND_MAX_ENTRIES) {
		xasprintf(cause, "allowed_hosts has more than %d entries",
		    OUTBOUND_MAX_ENTRIES);
		return (-1);
	}
	if (outbound_is_cidr(e)) {
		if (outbound_parse_cidr(e, &c) != 0) {
			xasprintf(cause,
			    "allowed_hosts: bad address or CIDR \"%.64s\"", e);
			return (-1);
		}
		rules->cidrs = xreallocarray(rules->cidrs, rules->ncidrs + 1,
		    sizeof *rules->cidrs);
		rules->cidrs[rules->ncidrs++] = c;
		return (0);
	}
	low = xstrdup(e);
	for (i = 0; low[i] != '\0'; i++)
		low[i] = (char)tolower((unsigned char)low[i]);
	rules->globs.v = xreallocarray(rules->globs.v, rules->globs.n + 1,
	    sizeof *rules->globs.v);
	rules->globs.v[rules->globs.n++] = low;
	return (0);
}

/*
 * Parse [k8s_auth] allowed_hosts (NULL or "" is the empty list).  Returns
 * the rules, or NULL with *cause.
 */
struct outbound_rules *
outbound_rules_parse(const char *list, char **cause)
{
	struct outbound_rules *rules;
	char *copy, *p, *e, *why = NULL;

	rules = xcalloc(1, sizeof *rules);
	if (list == NULL)
		return (rules);
	copy = p = xstrdup(list);
	while ((e = strsep(&p, ",")) != NULL) {
		e = util_trim(e);
		if (*e == '\0')
			continue;
		if (outbound_rules_add(rules, e, &why) != 0) {
			if (cause != NULL)
				*cause = why;
			else
				free(why);
			free(copy);
			outbound_rules_free(rules);
			return (NULL);
		}
	}
	free(copy);
	return (rules);
}

/* Does the list allow any host (no entries)? */
int
outbound_rules_empty(const struct outbound_rules *rules)
{
	return (rules == NULL || (rules->globs.n == 0 && rules->ncidrs == 0));
}

/*
 * The host of an http(s) URL, lowercased, IPv6 brackets removed; NULL
 * when there is none.  validate_host() has checked the URL's shape.
 */
char *
outbound_url_host(const char *url)
{
	const char *a, *end;
	char *host;
	size_t i;

	if ((a = strstr(url, "://")) == NULL)
		return (NULL);
	a += 3;
	if (*a == '[') {
		a++;
		end = strchr(a, ']');
	} else
		end = a + strcspn(a, ":/?#");
	if (end == NULL || end == a)
		return (NULL);
	host = xstrndup(a, (size_t)(end - a));
	for (i = 0; host[i] != '\0'; i++)
		host[i] = (char)tolower((unsigned char)host[i]);
	return (host);
}

/*
 * The port of an http(s) URL: the explicit one, else 443 (https) or 80;
 * 0 when it does not parse.
 */
long
outbound_url_port(const char *url)
{
	const char *a, *end;
	char buf[8];
	long port;
	size_t n;

	if ((a = strstr(url, "://")) == NULL)
		return (0);
	a += 3;
	if (*a == '[')
		a = strchr(a, ']');
	else
		a += strcspn(a, ":/?#");
	if (a == NULL || (*a == ']' && *++a != ':') || *a != ':')
		return (strncasecmp(url, "https://", 8) == 0 ? 443 : 80);
	end = ++a;
	end += strspn(end, "0123456789");
	if ((n = (size_t)(end - a)) == 0 || n >= sizeof buf)
		return (0);
	memcpy(buf, a, n);
	buf[n] = '\0';
	return (util_parse_long(buf, 1, 65535, &port) == 0 ? port : 0);
}

/* Are the len address bytes link-local (169.254/16, fe80::/10)? */
static int
outbound_bytes_link_local(const unsigned char *b, int len)
{
	if (len == 4)
		return (b[0] == 169 && b[1] == 254);
	return (len == 16 && b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

/* Is the host an address literal that is link-local? */
int
outbound_link_local_host(const char *host)
{
	unsigned char b[16];

	return (outbound_bytes_link_local(b, outbound_parse_addr(host, b)));
}

/* The address bytes of a sockaddr (IPv4-mapped IPv6 as IPv4): 4, 16, 0. */
static int
outbound_sockaddr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };
	const struct sockaddr_in6 *s6;

	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return (4);
	}
	if (sa->sa_family != AF_INET6)
		return (0);
	s6 = (const struct sockaddr_in6 *)sa;
	if (memcmp(s6->sin6_addr.s6_addr, mapped, sizeof mapped) == 0) {
		memcpy(out, s6->sin6_addr.s6_addr + 12, 4);
		return (4);
	}
	memcpy(out, s6->sin6_addr.s6_addr, 16);
	return (16);
}

/* Is the socket address link-local (or not an IP address at all)? */
int
outbound_link_local_addr(const struct sockaddr *sa)
{
	unsigned char b[16];
	int len;

	if ((len = outbound_sockaddr_bytes(sa, b)) == 0)
		return (1);
	return (outbound_bytes_link_local(b, len));
}

/* Do the len address bytes lie in one of the CIDRs? */
static int
outbound_in_cidrs(const struct outbound_rules *rules, const unsigned char *b,
    int len)
{
	const struct outbound_cidr *c;
	size_t i;
	int full, rest;

	for (i = 0; i < rules->ncidrs; i++) {
		c = &rules->cidrs[i];
		if ((c->family == AF_INET) != (len == 4))
			continue;
		full = c->bits / 8;
		rest = c->bits % 8;
		if (memcmp(b, c->net, (size_t)full) != 0)
			continue;
		if (rest != 0 &&
		    ((b[full] ^ c->net[full]) & (0xff << (8 - rest)) & 0xff))
			continue;
		return (1);
	}
	return (0);
}

/*
 * Write time: may an instance set by a non-admin point at host?  0, or -1
 * with *cause (ready for a 403 message).  Link-local literals are refused
 * by outbound_check_host for everyone; this is the allowed_hosts part.
 */
int
outbound_host_allowed(const struct outbound_rules *rules, const char *host,
    char **cause)
{
	unsigned char b[16];
	int len;

	if (outbound_rules_empty(rules) || glob_match_any(&rules->globs, host))
		return (0);
	len = outbound_parse_addr(host, b);
	if (len != 0 ? outbound_in_cidrs(rules, b, len) : rules->ncidrs > 0)
		return (0);
	xasprintf(cause,
	    "host %.253s is not in [k8s_auth] allowed_hosts; only an admin may point an instance elsewhere",
	    host);
	return (-1);
}

/*
 * Connect time: may the server connect to sa for host?  Link-local is
 * refused always; with rules (the instance's host was set by a non-admin)
 * the host must match a glob or sa lie in a CIDR.  0, or -1 with a fixed
 * *why.
 */
int
outbound_addr_allowed(const struct outbound_rules *rules, const char *host,
    const struct sockaddr *sa, const char **why)
{
	unsigned char b[16];
	int len;

	if ((len = outbound_sockaddr_bytes(sa, b)) == 0 ||
	    outbound_bytes_link_local(b, len)) {
		*why = "link-local addresses are never contacted";
		return (-1);
	}
	if (outbound_rules_empty(rules) ||
	    (host != NULL && glob_match_any(&rules->globs, host)) ||
	    outbound_in_cidrs(rules, b, len))
		return (0);
	*why = "the address is not in [k8s_auth] allowed_hosts";
	return (-1);
}

/*
 * Connect time behind [k8s_auth] proxy: the address connected to is the
 * proxy's, so the destination's address cannot be judged.  With rules
 * the host itself must be allowed by its text: a glob match, or an
 * address literal in a CIDR (a name that matches no glob is refused,
 * since only the proxy learns where it resolves).  0, or -1 with a fixed
 * *why.
 */
int
outbound_proxied_allowed(const struct outbound_rules *rules, const char *host,
    const char **why)
{
	unsigned char b[16];
	int len;

	if (outbound_rules_empty(rules) ||
	    (host != NULL && glob_match_any(&rules->globs, host)))
		return (0);
	if (host != NULL && (len = outbound_parse_addr(host, b)) != 0 &&
	    outbound_in_cidrs(rules, b, len))
		return (0);
	*why =
	    "behind [k8s_auth] proxy, a host a non-admin set must match an allowed_hosts glob or be an address in one of its CIDRs";
	return (-1);
}

/*
 * The write-time check of an instance host URL for everyone: never a
 * link-local address.  0 or -1 with *cause (a 400 message).
 */
int
outbound_check_host(const char *url, char **cause)
{
	char *host;
	int bad;

	if ((host = outbound_url_host(url)) == NULL) {
		xasprintf(cause, "host has no host name");
		return (-1);
	}
	bad = outbound_link_local_host(host);
	free(host);
	if (!bad)
		return (0);
	xasprintf(cause,
	    "host is a link-local address (169.254.0.0/16, fe80::/10), which is never contacted");
	return (-1);
}
