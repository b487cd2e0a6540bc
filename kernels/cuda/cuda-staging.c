/* Host-to-device copies through pinned staging buffers: the weight loader
 * hands over pageable memory (a dequantized or converted tensor), and a
 * copy from pageable memory is a staged, synchronous driver copy.  Two
 * pinned chunks alternate instead: while chunk k is on the copy engine the
 * host fills chunk k + 1, so the host memcpy and the PCIe transfer overlap.
 * One set per process (loads are not concurrent), made on first use and
 * freed at plugin shutdown. */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "cuda-impl.h"

#define STAGE_CHUNK ((size_t)16 << 20)
#define STAGE_MIN ((size_t)1 << 20)    /* smaller copies go straight to cudaMemcpy */

static struct {
    pthread_mutex_t mu;
    int device;                         /* -1: nothing made yet */
    cudaStream_t stream;
    char *buf[2];
    cudaEvent_t ev[2];
    int busy[2];                        /* ev[i] recorded and not yet waited */
} st = {PTHREAD_MUTEX_INITIALIZER, -1, NULL, {NULL, NULL}, {NULL, NULL}, {0, 0}};

static void release(void)
{
    if (st.device < 0)
        return;
    if (cudaSetDevice(st.device) == cudaSuccess) {
        for (int i = 0; i < 2; i++) {
            if (st.ev[i])
                ZL_CUDA_WARN(cudaEventDestroy(st.ev[i]));
            if (st.buf[i])
                ZL_CUDA_WARN(cudaFreeHost(st.buf[i]));
        }
        if (st.stream)
            ZL_CUDA_WARN(cudaStreamDestroy(st.stream));
    }
    memset(st.buf, 0, sizeof st.buf);
    memset(st.ev, 0, sizeof st.ev);
    memset(st.busy, 0, sizeof st.busy);
    st.stream = NULL;
    st.device = -1;
}

/* The staging set on `device` (remade when the device changes). */
static int setup(int device)
{
    if (st.device == device)
        return ZL_OK;
    release();
    st.device = device;
    /* a blocking stream: ordered with the legacy default stream and the
     * instances' streams, like the cudaMemcpy it replaces */
    ZL_CUDA_TRY(cudaStreamCreate(&st.stream));
    for (int i = 0; i < 2; i++) {
        ZL_CUDA_TRY(cudaMallocHost((void **)&st.buf[i], STAGE_CHUNK));
        ZL_CUDA_TRY(cudaEventCreateWithFlags(&st.ev[i], cudaEventDisableTiming));
    }
    return ZL_OK;
}

static int staged(int device, char *dst, const char *src, size_t bytes)
{
    int rc = setup(device);
    if (rc < 0) {
        release();
        return rc;
    }
    size_t k = 0;
    for (size_t off = 0; off < bytes; off += STAGE_CHUNK, k++) {
        int i = (int)(k & 1);
        size_t n = bytes - off < STAGE_CHUNK ? bytes - off : STAGE_CHUNK;
        if (st.busy[i]) {
            ZL_CUDA_TRY(cudaEventSynchronize(st.ev[i]));
            st.busy[i] = 0;
        }
        memcpy(st.buf[i], src + off, n);
        ZL_CUDA_TRY(cudaMemcpyAsync(dst + off, st.buf[i], n, cudaMemcpyHostToDevice, st.stream));
        ZL_CUDA_TRY(cudaEventRecord(st.ev[i], st.stream));
        st.busy[i] = 1;
    }
    ZL_CUDA_TRY(cudaStreamSynchronize(st.stream));
    st.busy[0] = st.busy[1] = 0;
    return ZL_OK;
}

int cuda_copy_to_device(int device, void *dst, const void *src, size_t bytes)
{
    struct zl_bctx *g = cuda_graph_active(device);
    if (g && cuda_graph_pass(g)) /* a step's input inside a graph bracket */
        return cuda_graph_upload(g, dst, src, bytes);
    ZL_CUDA_TRY(cudaSetDevice(device));
    if (bytes < STAGE_MIN) {
        ZL_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
        return ZL_OK;
    }
    pthread_mutex_lock(&st.mu);
    int rc = staged(device, dst, src, bytes);
    pthread_mutex_unlock(&st.mu);
    return rc; /* the failing call is named in the message */
}

void cuda_staging_free(void)
{
    pthread_mutex_lock(&st.mu);
    release();
    pthread_mutex_unlock(&st.mu);
}
