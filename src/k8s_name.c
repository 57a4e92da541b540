/*
 * k8s_name.c: Kubernetes object names, as the API server validates them.
 *
 * A TokenReview comes from whatever the instance's host is, so the names it
 * reports (namespace, service account, pod) are checked before they are
 * compared, logged or put into a token: a namespace is a DNS-1123 label
 * (a-z, 0-9 and '-', alphanumeric at both ends, at most 63 characters), a
 * service account or pod name a DNS-1123 subdomain (such labels joined by
 * '.', at most 253 characters), exactly apimachinery's IsDNS1123Label and
 * IsDNS1123Subdomain.
 *
 * Owns nothing; pure functions, any thread.
 */
#include <string.h>

#include "k8sauth.h"

#define K8S_NAME_LABEL_MAX     63
#define K8S_NAME_SUBDOMAIN_MAX 253

/* Is c allowed inside a DNS-1123 label (a-z, 0-9, '-')? */
static int
k8s_name_char(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
}

/* Is s[0..len) a DNS-1123 label, ignoring the length limit? */
static int
k8s_name_label_span(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || s[0] == '-' || s[len - 1] == '-')
		return (0);
	for (i = 0; i < len; i++) {
		if (!k8s_name_char(s[i]))
			return (0);
	}
	return (1);
}

/* Is s a DNS-1123 label (a namespace)? */
int
k8s_name_label(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;

	return (len <= K8S_NAME_LABEL_MAX && k8s_name_label_span(s, len));
}

/* Is s a DNS-1123 subdomain (a service account or pod name)? */
int
k8s_name_subdomain(const char *s)
{
	const char *dot;
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0 || len > K8S_NAME_SUBDOMAIN_MAX)
		return (0);
	while ((dot = strchr(s, '.')) != NULL) {
		if (!k8s_name_label_span(s, (size_t)(dot - s)))
			return (0);
		s = dot + 1;
	}
	return (k8s_name_label_span(s, strlen(s)));
}
