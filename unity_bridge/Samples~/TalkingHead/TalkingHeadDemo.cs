// Sample: type a line into an InputField and press Enter or the Say button to hear and see it; Escape or the Stop
// button interrupts.
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

        public void InterruptLine()
        {
            character.Interrupt();
        }

#if ENABLE_LEGACY_INPUT_MANAGER  // projects on the new Input System only: use the buttons instead
        private void Update()
        {
            if (Input.GetKeyDown(KeyCode.Return)) SayLine();
            if (Input.GetKeyDown(KeyCode.Escape)) InterruptLine();
        }
#endif
    }
}
