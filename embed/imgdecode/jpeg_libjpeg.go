//go:build cgo && !imgfs_nolibjpeg

package imgdecode

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>

// Scans beyond this make a progressive JPEG a CPU bomb (libjpeg-turbo's own fuzzers use
// the same kind of limit); real encoders write about 10.
#define IMGFS_MAX_SCANS 500

typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
} imgfs_err;

typedef struct {
	int width, height, components, color_space, out_w, out_h;
	char msg[JMSG_LENGTH_MAX];
} imgfs_jinfo;

static void imgfs_error_exit(j_common_ptr c) {
	imgfs_err *e = (imgfs_err *)c->err;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jb, 1);
}

// Every corrupt-data warning (truncation included) is an error: the caller gets a clear
// error instead of an image padded with grey.
static void imgfs_emit_message(j_common_ptr c, int level) {
	if (level < 0) {
		imgfs_error_exit(c);
	}
}

static void imgfs_progress(j_common_ptr c) {
	j_decompress_ptr d = (j_decompress_ptr)c;
	if (d->is_decompressor && d->input_scan_number > IMGFS_MAX_SCANS) {
		imgfs_err *e = (imgfs_err *)c->err;
		snprintf(e->msg, sizeof e->msg, "more than %d scans", IMGFS_MAX_SCANS);
		longjmp(e->jb, 1);
	}
}

// imgfs_jpeg runs one decompression. out == NULL: header only (fills info). Otherwise decodes
// at scale num/8 into out (out_len bytes, rows of out_w*components bytes; RGBA for colour).
// Returns 0 on success, else info->msg says why.
static int imgfs_jpeg(const unsigned char *buf, unsigned long len, int num, unsigned char *out,
		size_t out_len, imgfs_jinfo *info) {
	struct jpeg_decompress_struct d;
	struct jpeg_progress_mgr prog;
	imgfs_err e;
	memset(&d, 0, sizeof d);
	d.err = jpeg_std_error(&e.pub);
	e.pub.error_exit = imgfs_error_exit;
	e.pub.emit_message = imgfs_emit_message;
	e.msg[0] = 0;
	if (setjmp(e.jb)) {
		memcpy(info->msg, e.msg, sizeof info->msg);
		jpeg_destroy_decompress(&d);
		return 1;
	}
	jpeg_create_decompress(&d);
	prog.progress_monitor = imgfs_progress;
	d.progress = &prog;
	jpeg_mem_src(&d, buf, len);
	jpeg_read_header(&d, TRUE);
	info->width = d.image_width;
	info->height = d.image_height;
	info->components = d.num_components;
	info->color_space = d.jpeg_color_space;
	if (out == NULL) {
		jpeg_destroy_decompress(&d);
		return 0;
	}
	d.scale_num = num;
	d.scale_denom = 8;
	d.out_color_space = d.num_components == 1 ? JCS_GRAYSCALE : JCS_EXT_RGBA;
	d.dct_method = JDCT_ISLOW;
	jpeg_start_decompress(&d);
	info->out_w = d.output_width;
	info->out_h = d.output_height;
	size_t stride = (size_t)d.output_width * d.output_components;
	if (stride * d.output_height > out_len) {
		snprintf(e.msg, sizeof e.msg, "output %ux%u does not fit the buffer", d.output_width, d.output_height);
		longjmp(e.jb, 1);
	}
	while (d.output_scanline < d.output_height) {
		JSAMPROW row = out + stride * d.output_scanline;
		jpeg_read_scanlines(&d, &row, 1);
	}
	jpeg_finish_decompress(&d);
	jpeg_destroy_decompress(&d);
	return 0;
}
*/
import "C"

import (
	"errors"
	"image"
	"unsafe"
)

// ScaledJPEG tells whether JPEGs are decoded by libjpeg-turbo with DCT scaling.
const ScaledJPEG = true

type jpegHeader struct {
	w, h, comps int
	cmyk        bool
}

func libjpegCall(b []byte, num int, out []byte) (C.imgfs_jinfo, error) {
	var info C.imgfs_jinfo
	if len(b) == 0 {
		return info, errors.New("empty input")
	}
	// Both buffers are passed as call arguments (pinned for the call by cgo) and hold no
	// Go pointers.
	var op *C.uchar
	if len(out) > 0 {
		op = (*C.uchar)(unsafe.Pointer(&out[0]))
	}
	rc := C.imgfs_jpeg((*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), C.int(num), op, C.size_t(len(out)), &info)
	if rc != 0 {
		return info, errors.New(C.GoString(&info.msg[0]))
	}
	return info, nil
}

func jpegConfig(b []byte) (jpegHeader, error) {
	info, err := libjpegCall(b, 8, nil)
	if err != nil {
		return jpegHeader{}, err
	}
	cs := int(info.color_space)
	return jpegHeader{w: int(info.width), h: int(info.height), comps: int(info.components),
		cmyk: cs == C.JCS_CMYK || cs == C.JCS_YCCK}, nil
}

// decodeJPEGScaled decodes at scale num/8 (1..8). CMYK JPEGs go to image/jpeg (libjpeg does
// not convert them to RGB).
func decodeJPEGScaled(b []byte, hdr jpegHeader, num int) (image.Image, error) {
	if hdr.cmyk {
		return decodeJPEGStd(b)
	}
	ow, oh := scaledSize(hdr.w, num), scaledSize(hdr.h, num)
	bpp := 4
	if hdr.comps == 1 {
		bpp = 1
	}
	if ow <= 0 || oh <= 0 {
		return nil, errors.New("image has no pixels")
	}
	out := make([]byte, ow*oh*bpp)
	info, err := libjpegCall(b, num, out)
	if err != nil {
		return nil, err
	}
	if int(info.out_w) != ow || int(info.out_h) != oh {
		return nil, errors.New("unexpected output size")
	}
	r := image.Rect(0, 0, ow, oh)
	if bpp == 1 {
		return &image.Gray{Pix: out, Stride: ow, Rect: r}, nil
	}
	return &image.RGBA{Pix: out, Stride: 4 * ow, Rect: r}, nil
}
