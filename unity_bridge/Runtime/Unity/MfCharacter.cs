// A talking character in a Unity scene: connects to mf serve in the background, shows the face on a Texture2D
// (uploaded on the main thread) and plays the voice through this GameObject's AudioSource (OnAudioFilterRead, on
// Unity's audio thread). The rig frame due with the shown frame is kept in RigFrame for MfRigDriver (a rigged
// character's blendshapes); requestVideo = false asks the server for rig-only mode (audio and rig frames, no pixels).
// All logic lives in the engine-free core (MfClient, Player); this is only the Unity shell.
// Not compiled in the repository's CI (there is no Unity there); the core it calls is tested with mono.
using System;
using System.Threading.Tasks;
using UnityEngine;
using UnityEngine.Events;

namespace Mfruntime.Unity
{
    [Serializable] public class UtteranceEvent : UnityEvent<long> { }
    [Serializable] public class UtteranceEndedEvent : UnityEvent<long, bool> { }

    [RequireComponent(typeof(AudioSource))]
    [AddComponentMenu("mfruntime/Mf Character")]
    public sealed class MfCharacter : MonoBehaviour
    {
        [Tooltip("mf serve's control address (its --bind).")]
        public string controlAddress = "tcp://127.0.0.1:5555";
        [Tooltip("The stream address; empty means the control port + 1 (mf serve's default).")]
        public string streamAddress = "";
        [Tooltip("The character id on the server ('default' exists from the start; others are made by SetCharacter).")]
        public string character = "default";
        [Tooltip("eSpeak NG voice for Say, e.g. en-us+m3; empty uses the character's voice.")]
        public string voice = "";
        [Tooltip("Denoising steps per chunk: 1-4 live, 8-50 quality; 0 uses the server's setting.")]
        [Range(0, 50)] public int steps = 0;
        [Tooltip("Audio buffered before a line starts playing: more absorbs network jitter, less answers sooner.")]
        [Range(0, 1000)] public int prebufferMs = 80;
        [Tooltip("Optional: this renderer's material shows the face.")]
        public Renderer faceRenderer;
        [Tooltip("Video frames (FaceTexture). Off = rig-only mode: the server skips its video decoder and sends the voice " +
                 "and rig frames only, for a 3D character driven by an MfRigDriver. Sent to the server when enabled.")]
        public bool requestVideo = true;
        [Tooltip("Rig frames (face controls and OVR visemes) for an MfRigDriver. Sent to the server when enabled.")]
        public bool requestRig = true;
        [Tooltip("Between lines the character listens: the server streams idle chunks (silence, the mouth closed, blinks " +
                 "and a slow head sway in the rig) whenever it has nothing to say. Sent to the server when enabled.")]
        public bool listenBetweenLines = false;

        public UtteranceEvent onUtteranceStarted = new UtteranceEvent();
        public UtteranceEndedEvent onUtteranceEnded = new UtteranceEndedEvent();

        /// <summary>The face, updated every frame while the character talks (null before the first frame).</summary>
        public Texture2D FaceTexture { get; private set; }

        /// <summary>The engine-free client (requests, stats, the Player); null while disabled.</summary>
        public MfClient Client { get { return client; } }

        /// <summary>The rig frame due now: the one of the video frame shown (also in rig-only mode, where no video frame
        /// is). Taken in Update, so read it in LateUpdate (MfRigDriver does). Null before the first and while disabled.</summary>
        public RigFrame RigFrame { get; private set; }

        /// <summary>The utterance whose voice is playing now; 0 between lines (a rig then rests).</summary>
        public long SoundingUtterance { get { var c = client; return c == null ? 0 : c.Player.Sounding; } }

        /// <summary>What the server sends this character (video, rig) once it has answered set_outputs; null before.</summary>
        public StreamOutputs Outputs
        {
            get { var t = outputs; return t != null && t.Status == TaskStatus.RanToCompletion ? t.Result : null; }
        }

        private volatile MfClient client;  // read by Unity's audio thread
        private Task<StreamOutputs> outputs;  // set_outputs of OnEnable; Say and Drive wait for it
        private byte[] upload;

        private void OnEnable()
        {
            // Frames are shown when their audio is heard, i.e. after Unity's output buffers (DSP buffer × count).
            int bufferLength, buffers;
            AudioSettings.GetDSPBufferSize(out bufferLength, out buffers);
            int rate = AudioSettings.outputSampleRate;
            var c = new MfClient(new ClientSettings
            {
                ControlAddress = controlAddress,
                StreamAddress = string.IsNullOrEmpty(streamAddress) ? null : streamAddress,
                Character = character,
                Player = new PlayerSettings
                {
                    OutputRate = rate, PrebufferMs = prebufferMs, OutputLatencyMs = (int)(1000L * bufferLength * buffers / rate),
                },
            });
            c.Log += message => Debug.LogWarning(message, this);  // Debug.Log* may be called from any thread
            c.Connect();  // returns at once; sockets connect (and reconnect) on their own threads
            client = c;
            // The server keeps these per character (another client may have changed them): make them this component's.
            outputs = Watch(c.SetOutputsAsync(requestVideo, requestRig), "set_outputs");
            if (listenBetweenLines) Watch(c.SetIdleAsync(true), "idle");
            AudioSettings.OnAudioConfigurationChanged += AudioChanged;
            var source = GetComponent<AudioSource>();
            if (!source.isPlaying) source.Play();  // OnAudioFilterRead runs while the source plays
        }

        private void OnDisable()
        {
            AudioSettings.OnAudioConfigurationChanged -= AudioChanged;
            var c = client;
            client = null;
            RigFrame = null;
            if (c != null) c.Dispose();
        }

        private void OnDestroy()
        {
            if (FaceTexture != null) Destroy(FaceTexture);
        }

        /// <summary>The output device changed (e.g. its rate): reconnect with a player for the new settings.</summary>
        private void AudioChanged(bool deviceWasChanged)
        {
            if (!isActiveAndEnabled) return;
            OnDisable();
            OnEnable();
        }

        private void Update()
        {
            var c = client;
            if (c == null) return;
            VideoFrame frame;
            RigFrame rig;
            c.Player.TakeFrames(out frame, out rig);  // one reading of the audio clock: the rig frame is the video frame's
            if (frame != null) Show(frame);
            if (rig != null) RigFrame = rig;
            PlayerEvent e;
            while (c.Player.TryGetEvent(out e))
            {
                if (e.Kind == PlayerEventKind.UtteranceStarted) onUtteranceStarted.Invoke(e.Utterance);
                else onUtteranceEnded.Invoke(e.Utterance, e.Interrupted);
            }
        }

        private void Show(VideoFrame frame)
        {
            if (FaceTexture == null || FaceTexture.width != frame.Width || FaceTexture.height != frame.Height)
            {
                if (FaceTexture != null) Destroy(FaceTexture);
                FaceTexture = new Texture2D(frame.Width, frame.Height, TextureFormat.RGB24, false) { wrapMode = TextureWrapMode.Clamp };
                if (faceRenderer != null) faceRenderer.material.mainTexture = FaceTexture;
            }
            upload = Media.FlipRows(frame.Rgb, frame.Width, frame.Height, 3, upload);  // Unity rows run bottom first
            FaceTexture.LoadRawTextureData(upload);
            FaceTexture.Apply(false);
        }

        private void OnAudioFilterRead(float[] data, int channels)
        {
            var c = client;
            if (c == null) { Array.Clear(data, 0, data.Length); return; }
            c.Player.ReadAudio(data, 0, data.Length / channels, channels);
        }

        /// <summary>Speak a line (the request runs off the main thread; errors go to the console).</summary>
        public Task<long> Say(string text)
        {
            string v = string.IsNullOrEmpty(voice) ? null : voice;
            int n = steps;
            return AfterOutputs("Say", c => c.Say(text, v, n));
        }

        /// <summary>Lip-sync a clip (any rate and channel count; it is mixed to mono).</summary>
        public Task<long> Drive(AudioClip clip)
        {
            if (clip == null) throw new ArgumentNullException(nameof(clip));
            var data = new float[clip.samples * clip.channels];
            if (!clip.GetData(data, 0))
                throw new ArgumentException("cannot read the samples of '" + clip.name + "': set its Load Type to Decompress On Load");
            float[] mono = Media.Mono(data, clip.channels);
            int rate = clip.frequency, n = steps;
            return AfterOutputs("Drive", c => c.Drive(mono, rate, n));
        }

        /// <summary>Choose what the server sends this character from its next line on (see requestVideo, requestRig).</summary>
        public Task<StreamOutputs> SetOutputs(bool video, bool rig)
        {
            requestVideo = video;
            requestRig = rig;
            var t = Watch(Live().SetOutputsAsync(video, rig), "set_outputs");
            outputs = t;
            return t;
        }

        /// <summary>Listen between lines (see listenBetweenLines), or stop listening.</summary>
        public Task<bool> SetListening(bool on)
        {
            listenBetweenLines = on;
            return Watch(Live().SetIdleAsync(on), "idle");
        }

        /// <summary>Run a line's request off the main thread once the set_outputs request has been answered, so a line
        /// sent right after enabling already has the settings. A set_outputs that failed (e.g. the server was not up
        /// yet) is sent again first; if it fails again (logged, e.g. rig-only mode with a model that has no rig head),
        /// the line goes ahead with the server's settings.</summary>
        private Task<long> AfterOutputs(string what, Func<MfClient, long> request)
        {
            var c = Live();
            var o = outputs;
            if (o == null || o.IsFaulted || o.IsCanceled) outputs = o = Watch(c.SetOutputsAsync(requestVideo, requestRig), "set_outputs");
            return Watch(Task.Run(() =>
            {
                try { o.Wait(); }
                catch (AggregateException) { }  // already logged
                return request(c);
            }), what);
        }

        /// <summary>Stop talking now: the voice fades out at once and the server ends the line.</summary>
        public void Interrupt()
        {
            Watch(Live().InterruptAsync(), "Interrupt");
        }

        /// <summary>A new face for this character from the next line on. The texture must be readable
        /// (Read/Write enabled in its import settings).</summary>
        public Task SetCharacter(Texture2D face)
        {
            if (face == null) throw new ArgumentNullException(nameof(face));
            if (!face.isReadable)
                throw new ArgumentException("texture '" + face.name + "' is not readable: enable Read/Write in its import settings");
            Color32[] pixels = face.GetPixels32();
            var rgba = new byte[pixels.Length * 4];
            for (int i = 0; i < pixels.Length; i++)
            {
                rgba[4 * i] = pixels[i].r; rgba[4 * i + 1] = pixels[i].g; rgba[4 * i + 2] = pixels[i].b; rgba[4 * i + 3] = pixels[i].a;
            }
            byte[] rgb = Media.RgbFromRgba(rgba, face.width, face.height, bottomUp: true);
            var c = Live();
            return Watch(Task.Run(() => { c.SetCharacter(rgb, face.width, face.height); return 0L; }), "SetCharacter");
        }

        private MfClient Live()
        {
            var c = client;
            if (c == null) throw new InvalidOperationException("MfCharacter '" + name + "' is disabled: enable it before it can talk");
            return c;
        }

        private Task<T> Watch<T>(Task<T> task, string what)
        {
            task.ContinueWith(t => Debug.LogError("mfruntime " + what + ": " + t.Exception.GetBaseException().Message, this),
                              TaskContinuationOptions.OnlyOnFaulted);
            return task;
        }
    }
}
