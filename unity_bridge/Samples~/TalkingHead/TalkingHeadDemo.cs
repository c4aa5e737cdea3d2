// Sample: type a line into an InputField and press Enter (or the Say button) to hear and see it; Escape interrupts.
// Wire it as described in README.md next to this file.
using UnityEngine;
using UnityEngine.UI;

namespace Mfruntime.Unity.Samples
{
    public sealed class TalkingHeadDemo : MonoBehaviour
    {
        public MfCharacter character;
        public InputField line;
        public Text status;

        private void Start()
        {
            character.onUtteranceStarted.AddListener(u => status.text = "speaking (line " + u + ")");
            character.onUtteranceEnded.AddListener((u, cut) => status.text = cut ? "interrupted" : "idle");
        }

        public void SayLine()
        {
            if (!string.IsNullOrWhiteSpace(line.text)) character.Say(line.text);
        }

        private void Update()
        {
            if (Input.GetKeyDown(KeyCode.Return)) SayLine();
            if (Input.GetKeyDown(KeyCode.Escape)) character.Interrupt();
        }
    }
}
