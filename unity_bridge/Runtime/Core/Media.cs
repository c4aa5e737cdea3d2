// Pixel and sample layout conversions between the protocol (RGB rows top first, mono) and engines (textures whose
// rows run bottom first, RGBA pixels, interleaved multi-channel clips).
using System;

namespace Mfruntime
{
    public static class Media
    {
        /// <summary>Reverse the row order of a width × height × bytesPerPixel image into <paramref name="dst"/>
        /// (allocated when null or the wrong size); returns dst. Unity's Texture2D rows run bottom first.</summary>
        public static byte[] FlipRows(byte[] src, int width, int height, int bytesPerPixel, byte[] dst = null)
        {
            int row = width * bytesPerPixel;
            if (src == null || (long)row * height != src.Length)
                throw new ArgumentException("the image is " + (src == null ? 0 : src.Length) + " bytes, not " + width + "×" + height + "×" + bytesPerPixel);
            if (dst == null || dst.Length != src.Length) dst = new byte[src.Length];
            for (int y = 0; y < height; y++) Buffer.BlockCopy(src, y * row, dst, (height - 1 - y) * row, row);
            return dst;
        }

        /// <summary>RGBA pixels (4 bytes each) → RGB, optionally turning bottom-first rows into top-first ones.</summary>
        public static byte[] RgbFromRgba(byte[] rgba, int width, int height, bool bottomUp)
        {
            if (rgba == null || (long)width * height * 4 != rgba.Length)
                throw new ArgumentException("expected " + width + "×" + height + "×4 bytes of RGBA, got " + (rgba == null ? 0 : rgba.Length));
            var rgb = new byte[width * height * 3];
            for (int y = 0; y < height; y++)
            {
                int src = (bottomUp ? height - 1 - y : y) * width * 4, dst = y * width * 3;
                for (int x = 0; x < width; x++, src += 4, dst += 3)
                {
                    rgb[dst] = rgba[src]; rgb[dst + 1] = rgba[src + 1]; rgb[dst + 2] = rgba[src + 2];
                }
            }
            return rgb;
        }

        /// <summary>Interleaved samples of <paramref name="channels"/> channels → their mono average.</summary>
        public static float[] Mono(float[] interleaved, int channels)
        {
            if (channels < 1) throw new ArgumentException("channels must be ≥ 1");
            if (interleaved == null || interleaved.Length % channels != 0)
                throw new ArgumentException("the sample count is not a multiple of the channel count " + channels);
            if (channels == 1) return (float[])interleaved.Clone();
            var mono = new float[interleaved.Length / channels];
            for (int i = 0, k = 0; i < mono.Length; i++)
            {
                float sum = 0;
                for (int c = 0; c < channels; c++) sum += interleaved[k++];
                mono[i] = sum / channels;
            }
            return mono;
        }
    }
}
